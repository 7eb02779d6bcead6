"""Bundles sent over MQTT: the arguments of the ``deploy_*`` commands (:mod:`edge.deploy.args`), the staging of a
transfer on disk, resumable across restarts (:mod:`edge.deploy.staging`), the check that a received bundle is
signed by a trusted key (:mod:`edge.deploy.trust`) and the probation rule of an install
(:mod:`edge.deploy.probation`).  The daemon's use of them is :mod:`edge.daemon.deploy`; the sender is
``spectro-fleet push`` and ``rollout`` (:mod:`edge.fleet`)."""

from edge.deploy.args import (
    DEPLOY_COMMANDS,
    DeployArgs,
    DeployBeginArgs,
    DeployChunkArgs,
    DeployCommitArgs,
    DeployRollbackArgs,
    chunk_count,
    parse_deploy_args,
)

__all__ = ["DEPLOY_COMMANDS", "DeployArgs", "DeployBeginArgs", "DeployChunkArgs", "DeployCommitArgs",
           "DeployRollbackArgs", "chunk_count", "parse_deploy_args"]
