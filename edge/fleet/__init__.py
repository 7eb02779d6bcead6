"""``spectro-fleet``: the operator's side of a fleet over MQTT: the devices from their retained status
(:mod:`edge.fleet.client`), a bundle pushed to a device or a deployment group in signed, resumable chunks
(:mod:`edge.fleet.push`), and the command line (:mod:`edge.fleet.cli`).  Never imports TensorFlow."""
