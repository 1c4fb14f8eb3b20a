"""mamba-lrp explain (Mamba LMs and Vision Mamba) and evaluate started by torchrun with 2 ranks
over 127.0.0.1 (Gloo):
the outputs equal those of one process (float64), --jsonl streams the same rows, a failing
or killed rank ends every rank with a non-zero status and no complete-looking output, and
--resume after a kill finishes the same file. Skipped, with the reason, where the launcher
(python3 -m torch.distributed.run) is missing or the build has no process groups.

The reference is the one-process run of the same command (no torchrun variables), whose
explanations the other test files check against independent references. One process
explains all rows in one batch, a rank one row at a time: the float64 results differ only
by the rounding of a different BLAS blocking, hence rtol 1e-10 / atol 1e-12 where
relevance is compared (the seeded methods draw per row, so they agree to rounding too)."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

import fixtures

from cli import CLI, run

ROWS = 5  # odd: the ranks get different numbers of rows
ENV = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
for _v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
    ENV.pop(_v, None)


def launcher_missing():
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--help"], capture_output=True, text=True)
    return None if p.returncode == 0 and "--no_python" in p.stdout else \
        f"{sys.executable} -m torch.distributed.run is not available: {p.stderr.strip()[-200:]}"


pytestmark = pytest.mark.skipif(launcher_missing() is not None, reason=str(launcher_missing()))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_cmd(*args, nproc=2):
    # --redirects 1 --tee 1: Debian's torch 1.13 under Python 3.11 fails on the default "0"
    # (its Std flag lookup skips 0); the workers' stdout goes through the agent, stderr is theirs.
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--nnodes", "1",
            "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "--redirects", "1", "--tee", "1",
            "--no_python", str(CLI), *map(str, args)]


def torchrun(*args, check=True, nproc=2):
    p = subprocess.run(torchrun_cmd(*args, nproc=nproc), capture_output=True, text=True, env=ENV, timeout=300)
    if "built without torch.distributed" in p.stderr:
        pytest.skip("this build of mamba-lrp has no process groups (c10d with Gloo was not found)")
    if check and p.returncode != 0:
        raise AssertionError(f"torchrun mamba-lrp {' '.join(map(str, args))} exited {p.returncode}:\n{p.stderr[-3000:]}")
    return p


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("distributed")
    fixtures.write_hf_mamba_dir(d / "lm", {"num_labels": 3}, seed=4)
    ids = fixtures.random_ids(ROWS, 7, 64, seed=2)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding in one row
    ids[1, :3] = 0
    fixtures.write_inputs(d / "rows.safetensors", input_ids=ids, attention_mask=mask)
    fixtures.write_vim_dir(d / "vim", seed=1)
    fixtures.write_inputs(d / "pixels.safetensors", pixel_values=fixtures.random_pixels(3, seed=2))
    return d


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_same_explanations(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert (g["target"], g["position"]) == (w["target"], w["position"])
        torch.testing.assert_close(torch.tensor(g["relevance"], dtype=torch.float64),
                                   torch.tensor(w["relevance"], dtype=torch.float64), rtol=1e-10, atol=1e-12)
        assert g["logit"] == pytest.approx(w["logit"], rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("method", ["mambalrp", "smoothgrad"])
def test_explain_two_ranks_equals_one_process(data, tmp_path, method):
    # --batch-size 2: rank 0 takes rows 0-1 and 4, rank 1 rows 2-3
    common = ["explain", "--model", data / "lm", "--input", data / "rows.safetensors", "--method", method,
              "--dtype", "float64", "--samples", 3, "--batch-size", 2]
    run(*common, "--json", tmp_path / "one.json")
    torchrun(*common, "--json", tmp_path / "two.json", "--jsonl", tmp_path / "two.jsonl")
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two.json").read_text())
    assert (two["model_type"], two["method"]) == (one["model_type"], one["method"])
    assert_same_explanations(two["explanations"], one["explanations"])
    lines = read_jsonl(tmp_path / "two.jsonl")
    assert [x["row"] for x in lines] == list(range(ROWS)) and {x["method"] for x in lines} == {method}
    assert [{k: v for k, v in x.items() if k not in ("row", "method")} for x in lines] == two["explanations"]
    assert sorted(os.listdir(tmp_path)) == ["one.json", "two.json", "two.jsonl"]  # no temporary file left
    assert all(x["relevance"][:3] == [0, 0, 0] for x in lines[1:2])  # padding gets no relevance


def test_explain_jsonl_one_process_equals_json(data, tmp_path):
    # --jsonl without torchrun: the same rows, one per line.
    common = ["explain", "--model", data / "lm", "--input", data / "rows.safetensors", "--dtype", "float64"]
    run(*common, "--json", tmp_path / "one.json")
    run(*common, "--jsonl", tmp_path / "one.jsonl")
    lines = read_jsonl(tmp_path / "one.jsonl")
    assert_same_explanations(lines, json.loads((tmp_path / "one.json").read_text())["explanations"])


def numbers(x):
    """Every number in a JSON value, in document order (strings and keys compared separately)."""
    if isinstance(x, dict):
        return [v for k in sorted(x) for v in numbers(x[k])]
    if isinstance(x, list):
        return [v for e in x for v in numbers(e)]
    return [float(x)] if isinstance(x, (int, float)) and not isinstance(x, bool) else []


def strings(x):
    if isinstance(x, dict):
        return [(k, s) for k in sorted(x) for s in strings(x[k])] + sorted(x)
    if isinstance(x, list):
        return [s for e in x for s in strings(e)]
    return [x] if isinstance(x, str) else []


@pytest.mark.parametrize("kind", ["lm", "vim"])
def test_evaluate_two_ranks_equals_one_process(data, tmp_path, kind):
    model, rows = (data / "lm", data / "rows.safetensors") if kind == "lm" else (data / "vim", data / "pixels.safetensors")
    common = ["evaluate", "--model", model, "--data", rows, "--methods", "mambalrp,gi,smoothgrad",
              "--steps", 5, "--dtype", "float64", "--samples", 2, "--batch-size", 2]
    run(*common, "--json", tmp_path / "one.json")
    p = torchrun(*common, "--json", tmp_path / "two.json", "--markdown", tmp_path / "two.md")
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two.json").read_text())
    assert strings(two) == strings(one)
    assert len(one["conservation"]["mambalrp"]["logit"]) == one["rows"]
    torch.testing.assert_close(torch.tensor(numbers(two), dtype=torch.float64),
                               torch.tensor(numbers(one), dtype=torch.float64), rtol=1e-10, atol=1e-12)
    assert p.stdout.count("| mambalrp |") == 1  # only rank 0 prints the table
    assert (tmp_path / "two.md").read_text().count("| smoothgrad |") == 1


def test_bad_row_fails_every_rank(data, tmp_path):
    ids = fixtures.random_ids(4, 6, 64, seed=3)
    ids[3, 2] = 999  # outside the vocabulary: row 3, which rank 1 explains
    fixtures.write_inputs(tmp_path / "bad.safetensors", input_ids=ids)
    out = tmp_path / "out.jsonl"
    start = time.monotonic()
    p = torchrun("explain", "--model", data / "lm", "--input", tmp_path / "bad.safetensors", "--jsonl", out,
                 "--json", tmp_path / "out.json", "--timeout", 60, "--batch-size", 1, check=False)
    assert p.returncode != 0 and time.monotonic() - start < 120
    # both ranks say who failed and why, and exit with the bad-input status
    assert p.stderr.count("rank 1 failed on row 3:") == 2, p.stderr[-2000:]
    assert "vocabulary" in p.stderr
    assert not out.exists() and not (tmp_path / "out.json").exists()
    assert len(read_jsonl(tmp_path / "out.jsonl.partial")) == 2  # rows 0 and 1, for --resume


def worker_pids(marker):
    """The pids of mamba-lrp processes whose command line contains `marker`, by RANK."""
    pids = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"mamba-lrp") and marker.encode() in b" ".join(cmd):
            for e in env:
                if e.startswith(b"RANK="):
                    pids[int(e[5:])] = int(pid)
    return pids


def start_long_run(data, tmp_path, timeout):
    """A 2-rank --jsonl run of 24 rows slow enough (ig, 400 steps) to stop a rank in the middle:
    returns (the torchrun process, the workers' pids by rank, the command's arguments) once
    4 rows are written."""
    rows = 24
    fixtures.write_inputs(tmp_path / "many.safetensors", input_ids=fixtures.random_ids(rows, 8, 64, seed=5))
    out = tmp_path / "run.jsonl"
    common = ["explain", "--model", data / "lm", "--input", tmp_path / "many.safetensors", "--method", "ig",
              "--ig-steps", 400, "--dtype", "float64", "--batch-size", 1, "--jsonl", out, "--timeout", timeout]
    p = subprocess.Popen(torchrun_cmd(*common), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    partial = tmp_path / "run.jsonl.partial"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and p.poll() is None:
        if partial.exists() and partial.read_text().count("\n") >= 4:
            break
        time.sleep(0.05)
    pids = worker_pids(str(out))
    if p.poll() is not None:
        _, err = p.communicate()
        if "built without torch.distributed" in err:
            pytest.skip("this build of mamba-lrp has no process groups")
        raise AssertionError(f"the run ended before a rank could be stopped: {err[-2000:]}")
    assert 1 in pids, pids
    return p, pids, common


def assert_all_exited(pids):
    for pid in pids.values():
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_killed_rank_ends_the_run_and_resume_finishes_the_file(data, tmp_path):
    p, pids, common = start_long_run(data, tmp_path, 60)
    out, partial = tmp_path / "run.jsonl", tmp_path / "run.jsonl.partial"
    os.kill(pids[1], signal.SIGKILL)
    killed = time.monotonic()
    _, err = p.communicate(timeout=120)
    # torchrun notices the dead rank within its monitor interval (5 s) and names it and the
    # signal. Rank 0 reports the closed connection itself when it reaches the round's gather
    # first; when it is still explaining its rows, torchrun stops it (SIGTERM) before that:
    # which comes first depends on the machine's load, so either ends rank 0.
    assert p.returncode != 0 and time.monotonic() - killed < 60
    assert ("rank 0 of 2: gathering the results failed" in err or
            re.search(r"Sending process %d closing signal SIGTERM" % pids.get(0, -1), err)), err[-2000:]
    assert "rank      : 1" in err and "SIGKILL" in err, err[-2000:]
    assert not out.exists()
    written = len(read_jsonl(partial))
    assert 4 <= written < 24
    assert_all_exited(pids)

    torchrun(*common, "--resume")
    assert not partial.exists()
    resumed = read_jsonl(out)
    # The reference: one process, uninterrupted, the same per-row computation.
    ref = tmp_path / "ref.jsonl"
    subprocess.run([str(CLI), *map(str, common[:-4]), "--jsonl", ref], check=True, env=ENV, capture_output=True)
    want = read_jsonl(ref)
    assert [x["row"] for x in resumed] == list(range(24))
    assert_same_explanations(resumed, want)
    assert out.read_text() == ref.read_text()  # the same per-row computation, so the same bytes


def test_hung_rank_times_out(data, tmp_path):
    # A stopped rank (SIGSTOP) sends nothing: rank 0 gives up after --timeout 3 s; torchrun then
    # stops the rest (it waits 30 s for the stopped one to end after SIGTERM, then kills it).
    p, pids, _ = start_long_run(data, tmp_path, 3)
    os.kill(pids[1], signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        _, err = p.communicate(timeout=120)
    finally:
        if os.path.exists(f"/proc/{pids[1]}"):
            os.kill(pids[1], signal.SIGKILL)
    assert p.returncode != 0 and time.monotonic() - stopped < 90
    assert "rank 0 of 2: gathering the results failed" in err and "Timed out" in err, err[-2000:]
    assert not (tmp_path / "run.jsonl").exists()
    assert_all_exited(pids)


def test_resume_checks_the_file(data, tmp_path):
    out = tmp_path / "r.jsonl"
    (tmp_path / "r.jsonl.partial").write_text('{"row": 0, "method": "gi", "relevance": []}\n')
    p = run("explain", "--model", data / "lm", "--input", data / "rows.safetensors", "--jsonl", out, "--resume",
            check=False)
    assert p.returncode == 2 and "not row 0 of method mambalrp" in p.stderr
    p = run("explain", "--model", data / "lm", "--ids", "1,2", "--resume", check=False)
    assert p.returncode == 2 and "--resume" in p.stderr


VIM_KEYS = ("target", "position", "cls_position")  # integers: equal
VIM_NUMBERS = ("logit", "relevance_sum", "pixel_relevance_sum", "constant_relevance")


def assert_same_vim_explanations(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert sorted(g) == sorted(w)
        assert [g[k] for k in VIM_KEYS] == [w[k] for k in VIM_KEYS]
        for k in ("relevance", "patch_relevance"):
            torch.testing.assert_close(torch.tensor(g[k], dtype=torch.float64), torch.tensor(w[k], dtype=torch.float64),
                                       rtol=1e-10, atol=1e-12)
        for k in VIM_NUMBERS:
            if k in w:
                assert g[k] == pytest.approx(w[k], rel=1e-10, abs=1e-12), k


@pytest.mark.parametrize("method", ["mambalrp", "smoothgrad"])
def test_vim_explain_two_ranks_equals_one_process(data, tmp_path, method):
    # 3 images, --batch-size 1: rank 0 takes images 0 and 2, rank 1 image 1
    common = ["explain", "--model", data / "vim", "--input", data / "pixels.safetensors", "--method", method,
              "--dtype", "float64", "--samples", 3, "--batch-size", 1]
    run(*common, "--json", tmp_path / "one.json")
    p = torchrun(*common, "--json", tmp_path / "two.json", "--jsonl", tmp_path / "two.jsonl")
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two.json").read_text())
    assert (two["model_type"], two["method"]) == ("vim", method)
    assert len(one["explanations"]) == 3 and ("pixel_relevance_sum" in one["explanations"][0]) == (method == "mambalrp")
    assert_same_vim_explanations(two["explanations"], one["explanations"])
    lines = read_jsonl(tmp_path / "two.jsonl")
    assert [x["row"] for x in lines] == [0, 1, 2] and {x["method"] for x in lines} == {method}
    assert [{k: v for k, v in x.items() if k not in ("row", "method")} for x in lines] == two["explanations"]
    assert sorted(os.listdir(tmp_path)) == ["one.json", "two.json", "two.jsonl"]  # no temporary file left
    assert p.stdout.count("explained 3 images") == 1  # only rank 0 reports


def test_vim_resume_under_torchrun_finishes_the_file(data, tmp_path):
    # An interrupted one-process --jsonl file (row 0 complete, row 1 cut in the middle of its
    # line) resumed by 2 ranks, one row each: the same bytes as an uninterrupted one-process
    # run with the same per-row computation (--batch-size 1).
    common = ["explain", "--model", data / "vim", "--input", data / "pixels.safetensors", "--method", "random",
              "--dtype", "float64", "--batch-size", 1]
    run(*common, "--jsonl", tmp_path / "ref.jsonl")
    ref = (tmp_path / "ref.jsonl").read_text()
    first, second = ref.splitlines(keepends=True)[:2]
    (tmp_path / "out.jsonl.partial").write_text(first + second[: len(second) // 2])
    p = torchrun(*common, "--jsonl", tmp_path / "out.jsonl", "--resume")
    assert "resuming" in p.stderr and "after its 1 rows" in p.stderr
    assert (tmp_path / "out.jsonl").read_text() == ref
    assert not (tmp_path / "out.jsonl.partial").exists()
    # `random` draws each row from its own seed, whatever the batch: the relevance equals, to
    # the bit, that of one process explaining the 3 images as one batch (the logits, from a
    # batched forward, may differ in the last digit).
    whole = json.loads(run(*common[:-2], "--json", "-").stdout)["explanations"]
    assert [x["relevance"] for x in read_jsonl(tmp_path / "out.jsonl")] == [x["relevance"] for x in whole]


def test_vim_row_mode_refuses_per_pixel_outputs(data, tmp_path):
    # --png and --output are written by one process: with --jsonl (or under torchrun) they are bad input
    for flag, dest in (("--png", "v.png"), ("--output", "v.safetensors")):
        p = run("explain", "--model", data / "vim", "--input", data / "pixels.safetensors", "--jsonl",
                tmp_path / "v.jsonl", flag, tmp_path / dest, check=False)
        assert p.returncode == 2 and "one process" in p.stderr, p.stderr
        assert not (tmp_path / "v.jsonl").exists() and not (tmp_path / dest).exists()


def test_vim_jsonl_one_process_equals_json(data, tmp_path):
    common = ["explain", "--model", data / "vim", "--input", data / "pixels.safetensors", "--dtype", "float64"]
    run(*common, "--json", tmp_path / "one.json")
    run(*common, "--jsonl", tmp_path / "one.jsonl")
    lines = read_jsonl(tmp_path / "one.jsonl")
    assert [(x.pop("row"), x.pop("method")) for x in lines] == [(0, "mambalrp"), (1, "mambalrp"), (2, "mambalrp")]
    assert_same_vim_explanations(lines, json.loads((tmp_path / "one.json").read_text())["explanations"])


def test_bad_torchrun_environment_is_bad_input(data):
    env = dict(ENV, RANK="2", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT="1")
    p = subprocess.run([str(CLI), "explain", "--model", data / "lm", "--input", data / "rows.safetensors"],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 2 and "RANK must be an integer in [0, 1]" in p.stderr
