"""Load a model in a child process before the caller loads it: a model that makes the interpreter abort is refused,
and the caller (the daemon serving the old bundle, the trainer after its search) lives on.

Some models do not fail with an error but end the process: LiteRT's XNNPACK delegate aborted (``free(): double free
detected``, SIGABRT) in ``allocate_tensors`` on an int8 CNN whose dead ReLU path left an activation scale of about
1e-8 beside a concatenation at the input's scale. No exception can be caught from a native abort, so the only way
to refuse such a model is to load it first where dying costs nothing: a fresh Python process that builds
:class:`edge.runtime.ModelRuntime` from the same bytes with the same interpreter threads (the default interpreter,
as the bundle loader uses) and runs its batching check (:meth:`~edge.runtime.ModelRuntime.check_batching`: single-row
invokes and the batch interpreters the runtime allocates later, where the delegate is applied again).

Written here on the standard library's :mod:`subprocess` because no library isolates a native crash of an
interpreter (a process pool would pay its start-up on the device's every load all the same). A model that loaded
in a child once is not probed again by the same process (keyed by the SHA-256 of its bytes and the threads), so a
daemon that reloads the same bundle, or a test suite that loads the same fixture, pays the 0.2-0.4 s of a child once.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Final

from edge.errors import RuntimeLoadError

__all__ = ["PROBE_TIMEOUT_S", "cap_tf_log_level", "probe_model_load"]

#: Seconds a child may take to load and check a model (the interpreter's import included: 0.2-0.4 s on the
#: development VM) before the model is refused; a bundle's three models at most stay under the systemd unit's 90 s
#: start timeout.
PROBE_TIMEOUT_S: Final = 20.0
#: What the child runs: the model's bytes come on its standard input.
_CHILD_CODE = ("import sys\nfrom edge.runtime import ModelRuntime\n"
               "ModelRuntime(sys.stdin.buffer.read(), num_threads=int(sys.argv[1])).check_batching()\n")
#: The folder that holds the ``edge`` package (the child imports it from there).
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])
#: SHA-256 of the models that loaded in a child.
_loaded: set[str] = set()


def cap_tf_log_level(env: dict[str, str]) -> None:
    """Set ``TF_CPP_MIN_LOG_LEVEL`` in a child's ``env`` to at most 2 (2 when unset or not a number), so the C++
    errors of TensorFlow / LiteRT stay in the child's output while its info and warnings are hidden."""
    level = env.get("TF_CPP_MIN_LOG_LEVEL", "2")
    env["TF_CPP_MIN_LOG_LEVEL"] = str(min(int(level), 2)) if level.isdigit() else "2"


def probe_model_load(model_content: bytes, *, num_threads: int = 1, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Load ``model_content`` with :class:`edge.runtime.ModelRuntime` (``num_threads``) in a child process and run
    its batching check; raise
    :class:`~edge.errors.RuntimeLoadError` when the child was killed by a signal (the interpreter aborted) or did
    not finish within ``timeout_s``.

    A child that exits with a Python error (an invalid model) is not reported here: the caller's own load raises
    the same error, with its message. Nothing is cached then.
    """
    digest = f"{hashlib.sha256(model_content).hexdigest()}/{int(num_threads)}"
    if digest in _loaded:
        return
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([_PACKAGE_ROOT, *filter(None, [env.get("PYTHONPATH")])])
    cap_tf_log_level(env)  # the runtime's C++ errors stay for the message below
    try:
        child = subprocess.run([sys.executable, "-c", _CHILD_CODE, str(int(num_threads))], input=model_content,
                               capture_output=True, env=env, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeLoadError(f"the model ({len(model_content)} bytes) did not load within {timeout_s:g} s in a "
                               "child process: refused") from exc
    if child.returncode < 0:
        try:
            how = signal.Signals(-child.returncode).name
        except ValueError:
            how = f"signal {-child.returncode}"
        last = [ln for ln in child.stderr.decode("utf-8", "replace").splitlines() if ln.strip()][-1:]
        raise RuntimeLoadError(
            f"the interpreter aborted the process that loaded the model ({len(model_content)} bytes): killed by "
            f"{how}" + (f" ({last[0].strip()})" if last else "") + "; the model is refused (a native crash of the "
            "interpreter, e.g. XNNPACK on degenerate int8 scales: docs/bundle.md)")
    if child.returncode == 0:
        _loaded.add(digest)
