"""``benchmarks/method_cost.py --against REF`` (benchmarks/against.py): the old tree it times, and its refusals."""

import os
import subprocess

import pytest

from benchmarks import against


def test_checkout_extracts_the_commits_tree_without_touching_the_repository(tmp_path):
    head = subprocess.run(["git", "-C", against.ROOT, "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    worktrees = subprocess.run(["git", "-C", against.ROOT, "worktree", "list"], capture_output=True, text=True,
                               check=True).stdout
    folder, commit = against.checkout("HEAD", into=str(tmp_path))
    assert commit == head
    for path in ("benchmarks/method_cost.py", "benchmarks/common.py", "robust_paddle/engine/hooks.py"):
        with open(os.path.join(folder, path), "rb") as fh:
            shown = subprocess.run(["git", "-C", against.ROOT, "show", f"HEAD:{path}"], capture_output=True,
                                   check=True).stdout
            assert fh.read() == shown, path
    assert subprocess.run(["git", "-C", against.ROOT, "worktree", "list"], capture_output=True, text=True,
                          check=True).stdout == worktrees


def test_a_ref_that_is_no_commit_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match=r"--against: 'no-such-ref-xyz' is not a commit of the repository"):
        against.checkout("no-such-ref-xyz", into=str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_method_specs_with_parameters_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(SystemExit, match=r"method specs with parameters \(promix:networks=1\)"):
        against.compare("HEAD", ["standard+ce", "promix:networks=1"], config="configs/_base_/digits.yaml",
                        override=[], dataset=None, noise="sym40", epochs=3, rounds=1, workdir=str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_a_method_that_fails_in_a_tree_is_reported_and_left_out(tmp_path, capsys):
    result = against.compare("HEAD", ["no_such_method"], config="configs/_base_/digits.yaml", override=[],
                             dataset=None, noise="sym40", epochs=3, rounds=2, workdir=str(tmp_path))
    assert result["table"] == [] and result["runs"] == []
    assert list(result["failed"]) == ["no_such_method"] and result["failed"]["no_such_method"].startswith("old: ")
    against.print_table(result)
    out = capsys.readouterr().out
    assert out.count("FAILED, left out") == 1  # not tried again in the new tree or the second round
    assert "FAIL  no_such_method: not timed" in out
