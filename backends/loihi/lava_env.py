"""Lava's own virtual environment: where it lives, how ``neurocc setup lava`` builds it, how backends reach it.

lava-nc 0.10.0 (the latest) declares Python < 3.11, numpy < 2 and networkx <= 2.8.7, pins neurocc itself cannot
take (neurocc needs numpy >= 2 for nlopt 2.11 and networkx >= 3). So Lava gets a virtual environment of its own and
the ``lava`` backend runs the emitted program there as a subprocess; nothing of Lava is imported into neurocc.

The environment is ``$NEUROCC_LAVA_ENV``, else ``<sys.prefix>/lava`` (inside neurocc's own environment, so it goes
when that goes). ``install`` builds it: a venv, lava's declared dependencies from PyPI, lava-nc 0.10.0 itself with
``--no-deps --ignore-requires-python`` (its Requires-Python excludes 3.11), then, on Python >= 3.11, the one
source fix lava needs there: ``lava/magma/compiler/var_model.py`` gives dataclass fields the default
``ByteEncoder()``, which 3.11 rejects (mutable default); ``field(default_factory=ByteEncoder)`` is the same value.
A smoke run of a LIF neuron checks the result, and only then is ``neurocc-lava.json`` written: an environment
without it is incomplete and is rebuilt from scratch.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from neurocc.errors import NeuroccError

LAVA = "lava-nc==0.10.0"
LAVA_DEPENDENCIES = ("numpy>=1.24.4,<2", "scipy>=1.10.1,<2", "scikit-learn>=1.5,<2", "networkx<=2.8.7",
                     "asteval>=0.9.31,<0.10")        # lava-nc 0.10.0's Requires-Dist
MARKER = "neurocc-lava.json"
SETUP_COMMAND = "neurocc setup lava"
_VAR_MODEL = Path("lava") / "magma" / "compiler" / "var_model.py"
_SMOKE = """
import numpy as np
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.lif.process import LIF
lif = LIF(shape=(1,), bias_mant=np.array([10]), bias_exp=np.array([6]), vth=10000)
lif.run(condition=RunSteps(num_steps=3), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
v = int(lif.v.get()[0])
lif.stop()
assert v == 3 * (10 << 6), v
"""


def lava_env() -> Path:
    """Where Lava's environment is (or will be)."""
    return Path(os.environ.get("NEUROCC_LAVA_ENV") or Path(sys.prefix) / "lava")


def _python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def lava_python() -> Optional[Path]:
    """The interpreter of a complete Lava environment, or None."""
    env = lava_env()
    return _python(env) if (env / MARKER).is_file() and _python(env).exists() else None


def require_lava() -> Path:
    """The Lava interpreter, or a NeuroccError naming the command that installs it."""
    python = lava_python()
    if python is None:
        raise NeuroccError(f"the lava backend needs Lava (lava-nc 0.10.0) in its own environment, which is not "
                           f"installed at {lava_env()}: run `{SETUP_COMMAND}` (about 20 s and 310 MiB)")
    return python


def _run(command: list, what: str) -> None:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()]
        raise NeuroccError(f"{what} failed: {lines[-1] if lines else f'exit {done.returncode}'}")


def _fix_var_model(python: Path) -> None:
    """lava 0.10.0 on Python >= 3.11: dataclass defaults ``ByteEncoder()`` become ``field(default_factory=...)``."""
    found = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           capture_output=True, text=True, check=True)
    path = Path(found.stdout.strip()) / _VAR_MODEL
    text = path.read_text()
    old_import, new_import = "from dataclasses import dataclass, InitVar", "from dataclasses import dataclass, InitVar, field"
    if old_import not in text or ": ByteEncoder = ByteEncoder()" not in text:
        raise NeuroccError(f"{path}: not the lava-nc 0.10.0 source neurocc knows how to fix for Python 3.11")
    text = text.replace(old_import, new_import).replace(": ByteEncoder = ByteEncoder()",
                                                        ": ByteEncoder = field(default_factory=ByteEncoder)")
    path.write_text(text)


def install(env: Optional[Path] = None, say: Callable[[str], None] = print) -> dict:
    """Build Lava's environment at ``env`` (default ``lava_env()``); returns what the marker records."""
    env = Path(env or lava_env())
    if (env / MARKER).is_file():
        say(f"Lava is already installed at {env}")
        return json.loads((env / MARKER).read_text())
    start = time.monotonic()
    if env.exists():
        shutil.rmtree(env)              # an incomplete earlier attempt (no marker)
    try:
        say(f"creating {env}")
        _run([sys.executable, "-m", "venv", env], "creating the virtual environment")
        python = _python(env)
        say("installing lava-nc's dependencies: " + " ".join(LAVA_DEPENDENCIES))
        _run([python, "-m", "pip", "install", "-q", *LAVA_DEPENDENCIES], "installing lava's dependencies")
        say(f"installing {LAVA} (--no-deps --ignore-requires-python)")
        _run([python, "-m", "pip", "install", "-q", "--no-deps", "--ignore-requires-python", LAVA],
             f"installing {LAVA}")
        fixed = sys.version_info >= (3, 11)
        if fixed:
            say(f"fixing {_VAR_MODEL} for Python {sys.version_info.major}.{sys.version_info.minor}")
            _fix_var_model(python)
        say("checking a LIF neuron on Loihi2SimCfg(fixed_pt)")
        _run([python, "-c", _SMOKE], "running a Lava LIF neuron")
    except BaseException:
        shutil.rmtree(env, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in env.rglob("*") if p.is_file() and not p.is_symlink())
    record = {"lava": LAVA, "python": sys.version.split()[0], "var_model_fixed": fixed,
              "seconds": round(time.monotonic() - start, 1), "bytes": size}
    (env / MARKER).write_text(json.dumps(record, indent=1))
    say(f"Lava installed at {env} in {record['seconds']:.0f} s, {size / 2 ** 20:.0f} MiB")
    return record
