"""The fuzzing suite (tests/fuzzing.py) in CI: a bounded number of seeded cases per input class, each
judged by the command line's contract; a failure names its class and seed, which reproduce it."""
from __future__ import annotations

import pytest

from fuzzing import CLASSES, Seeds, run_case

CASES_PER_CLASS = {"model": 300, "data": 300, "options": 300, "hwmodel": 300, "artifact": 300}


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    return Seeds(tmp_path_factory.mktemp("fuzz_seeds"))


@pytest.mark.parametrize("cls", sorted(CLASSES))
def test_fuzzed_inputs_keep_the_contract(cls, seeds, tmp_path):
    failures, codes = [], {}
    for seed in range(CASES_PER_CLASS[cls]):
        verdict = run_case(cls, seed, seeds, tmp_path / "case")
        codes[verdict.code] = codes.get(verdict.code, 0) + 1
        if verdict.failure:
            failures.append(f"{cls} seed {seed}: {verdict.failure}")
    assert not failures, f"{len(failures)} of {CASES_PER_CLASS[cls]} cases broke the contract:\n" + "\n".join(failures[:20])
    assert codes.get(2, 0) > 0                  # the mutations do reach the validation layers
