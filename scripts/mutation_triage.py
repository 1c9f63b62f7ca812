"""Runs mutmut's mutants in one pytest session: a quick triage of a whole module before `mutmut run` confirms the
survivors by name (docs/TESTING.md, "Mutation testing").

mutmut 3 starts a pytest run for every mutant; on a shared two-core machine that is seconds of start-up per mutant,
hours for a module of a thousand mutants. This script collects the tests once and, for each mutant, switches it on
through mutmut's own trampolines and runs the tests mutmut's stats say reached its function (fastest first, stopping
at the first failure). Tests that the stats do not know (written after the stats run) run last, so "killed by a new
test" means that every older test reaching the function let the mutant through.

It needs the `mutants/` folder and its `mutmut-stats.json`, made by any `make mutation` run (stop it once the
mutation testing has started). The test files are copied from the working tree into `mutants/tests/` first.

    python scripts/mutation_triage.py 'mprnet_hf.data.degradations.*' tests/test_degradations.py

A mutant that only a slow, server or GPU test could catch shows as surviving here; in-process state that a test
leaves behind could hide or fake a kill, which is why `mutmut run NAME...` has the last word on every survivor.
"""

import argparse
import fnmatch
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "mutants"
MUTANT_DEFINITION = re.compile(r"^\s*def (x\S*?__mutmut_\d+)\(", re.MULTILINE)


def mutant_names(pattern: str) -> list[str]:
    """Every mutant that mutmut generated whose name matches `pattern`, in source order."""
    names = []
    for path in sorted(MUTANTS.rglob("*.py")):
        relative = path.relative_to(MUTANTS)
        if relative.parts[0] == "tests":
            continue
        module = ".".join(relative.with_suffix("").parts)
        for match in MUTANT_DEFINITION.finditer(path.read_text(encoding="utf-8")):
            name = f"{module}.{match.group(1)}"
            if fnmatch.fnmatch(name, pattern):
                names.append(name)
    return names


class Triage:
    """A pytest plugin that replaces the test loop by one run per mutant."""

    def __init__(self, mutants: list[str], stats: dict, output: Path | None):
        self.mutants, self.output = mutants, output
        self.tests_by_function = stats["tests_by_mangled_function_name"]
        self.durations = stats["duration_by_test"]
        self.verdicts: dict[str, str] = {}

    def pytest_runtestloop(self, session):
        from _pytest.runner import runtestprotocol
        from mutmut.mutation.trampoline import set_mutant_under_test

        items = {item.nodeid: item for item in session.items}
        new_tests = [nodeid for nodeid in items if nodeid not in self.durations]
        start = time.monotonic()
        for count, mutant in enumerate(self.mutants, 1):
            function = mutant.rsplit("__mutmut_", 1)[0]
            known = [test for test in self.tests_by_function.get(function, ()) if test in items]
            tests = sorted(known, key=lambda test: self.durations[test]) + new_tests
            verdict = "survived" if tests else "no tests"
            set_mutant_under_test(mutant)
            try:
                for index, test in enumerate(tests):
                    # The next test keeps the fixtures both use; all of them are torn down after each mutant.
                    next_item = items[tests[index + 1]] if index + 1 < len(tests) else None
                    if any(report.failed for report in runtestprotocol(items[test], log=False, nextitem=next_item)):
                        verdict = f"killed by {'new test ' if test in new_tests else ''}{test}"
                        break
            finally:
                session._setupstate.teardown_exact(None)
                set_mutant_under_test(None)
                os.environ.pop("MUTANT_UNDER_TEST", None)
            self.verdicts[mutant] = verdict
            print(f"{count}/{len(self.mutants)} {time.monotonic() - start:.0f}s {mutant}: {verdict}", flush=True)
            if self.output:
                self.output.write_text(json.dumps(self.verdicts, indent=1))
        return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pattern", help="mutant names, as for `mutmut run` (e.g. 'mprnet_hf.serving.x_open*')")
    parser.add_argument("tests", nargs="+", help="test files to collect, relative to the repository root")
    parser.add_argument("--output", type=Path, help="write the verdicts here as JSON")
    args = parser.parse_args()
    if not (MUTANTS / "mutmut-stats.json").is_file():
        sys.exit("No mutants/mutmut-stats.json: run `make mutation MUTANTS=...` until its mutation testing starts.")
    mutants = mutant_names(args.pattern)
    if not mutants:
        sys.exit(f"No mutant in mutants/ matches {args.pattern!r}.")
    for test_file in [*args.tests, "tests/conftest.py"]:
        if (ROOT / test_file).is_file():
            shutil.copy2(ROOT / test_file, MUTANTS / test_file)
    stats = json.loads((MUTANTS / "mutmut-stats.json").read_text())
    output = args.output.resolve() if args.output else None
    os.chdir(MUTANTS)
    os.environ.pop("MUTANT_UNDER_TEST", None)
    import pytest

    triage = Triage(mutants, stats, output)
    arguments = ["-q", "-p", "no:cacheprovider", "-p", "no:randomly", "--rootdir=.", "--tb=no", "--timeout=60"]
    pytest.main([*arguments, "-m", "not slow and not server", *args.tests], plugins=[triage])
    verdicts = list(triage.verdicts.values())
    survived = verdicts.count("survived")
    killed_by_new = sum(verdict.startswith("killed by new test") for verdict in verdicts)
    print(
        f"\n{len(verdicts)} mutants: {survived} survived ({survived / max(len(verdicts), 1):.1%}), "
        f"{killed_by_new} killed only by new tests, {verdicts.count('no tests')} reached by no test"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
