"""profiling/ncu.py on the CPU: the raw-CSV parser, the summary, the driver with a stand-in
ncu, and the refusal without a GPU or without ncu.

The sample follows the layout of ``ncu --csv --page raw`` (and of ``ncu --import
R.ncu-rep --csv --page raw``): a header row whose first columns are ``"ID",
"Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block
Size","Grid Size","Device","CC"`` followed by one column per metric name, then a
units row (empty for the fixed columns), then one row per profiled launch; the
profiler's own ``==PROF==`` lines and the application's output may be interleaved.
Values may carry thousands separators and units other than the base ones when
``--print-units base`` was not given.
"""
import csv
import os
import subprocess
import sys

import pytest

from profiling import ncu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FIXED = ["ID", "Process ID", "Process Name", "Host Name", "Kernel Name", "Context", "Stream",
         "Block Size", "Grid Size", "Device", "CC"]
METRICS = [
    ("dram__bytes.sum.per_second", "Gbyte/second"),
    ("gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed", "%"),
    ("gpu__dram_throughput.avg.pct_of_peak_sustained_elapsed", "%"),
    ("gpu__time_duration.sum", "usecond"),
    ("launch__block_size", ""),
    ("launch__grid_size", ""),
    ("launch__registers_per_thread", "register/thread"),
    ("launch__shared_mem_per_block_dynamic", "Kbyte/block"),
    ("launch__shared_mem_per_block_static", "byte/block"),
    ("launch__waves_per_multiprocessor", ""),
    ("sm__maximum_warps_per_active_cycle_pct", "%"),
    ("sm__throughput.avg.pct_of_peak_sustained_elapsed", "%"),
    ("sm__warps_active.avg.pct_of_peak_sustained_active", "%"),
]
CUDA_NAME = ("void s2v::dgru::(anonymous namespace)::forward_kernel<float>"
             "(s2v::dgru::(anonymous namespace)::Params)")


def _q(values):
    return ",".join('"' + v.replace('"', '""') + '"' for v in values)


def _row(i, kernel, block, grid, values):
    return _q([str(i), "4242", "python3", "gpu-host", kernel, "1", "7", block, grid, "0",
               "9.0", *values])


# metric values in METRICS order
TRITON_VALUES = ["1,234.5", "40.5", "38.25", "12.5", "128", "2,048", "96", "0", "0", "1.94",
                 "50", "72.5", "45.75"]
CUDA_VALUES = ["15.2", "8.1", "2.0", "3,100", "288", "1", "168", "16.5", "1,024", "0.01",
               "18.75", "12", "6.2"]

SAMPLE = "\n".join([
    "==PROF== Connected to process 4242 (/usr/bin/python3.12)",
    "==PROF== Profiling \"_video_predictor_fwd_kernel\" - 0: 0%....50%....100% - 9 passes",
    "target s2v/video_predictor/fwd fp32 ...: done",
    _q(FIXED + [m for m, _ in METRICS]),
    _q([""] * len(FIXED) + [u for _, u in METRICS]),
    _row(0, "_video_predictor_fwd_kernel", "(128, 1, 1)", "(2048, 1, 1)", TRITON_VALUES),
    _row(1, CUDA_NAME, "(288, 1, 1)", "(1, 1, 1)", CUDA_VALUES),
    _row(2, "_video_predictor_bwd_kernel", "(128, 1, 1)", "(2048, 1, 1)",
         ["n/a"] * len(METRICS)),
    "==PROF== Disconnected from process 4242",
    "",
])


def test_unit_scale_turns_printed_units_into_base_units():
    assert ncu.unit_scale("usecond") == pytest.approx(1e-6)
    assert ncu.unit_scale("nsecond") == pytest.approx(1e-9)
    assert ncu.unit_scale("msecond") == pytest.approx(1e-3)
    assert ncu.unit_scale("second") == 1.0
    assert ncu.unit_scale("Gbyte/second") == pytest.approx(1e9)
    assert ncu.unit_scale("byte/usecond") == pytest.approx(1e6)
    assert ncu.unit_scale("Kbyte/block") == pytest.approx(1e3)
    for unit in ("%", "", "register/thread", "byte", "block", "thread"):
        assert ncu.unit_scale(unit) == 1.0


def test_parse_number_handles_separators_and_missing_values():
    assert ncu.parse_number("1,234.5") == 1234.5
    assert ncu.parse_number("4.0e-05") == pytest.approx(4e-5)
    for text in ("", "n/a", None, "(128, 1, 1)"):
        assert ncu.parse_number(text) is None


def test_parser_reads_header_units_and_launch_rows():
    launches = ncu.parse_raw_csv(SAMPLE)
    assert [lc.text("ID") for lc in launches] == ["0", "1", "2"]
    first = launches[0]
    assert first.text("Kernel Name") == "_video_predictor_fwd_kernel"
    assert first.units["gpu__time_duration.sum"] == "usecond"
    assert first.value("gpu__time_duration.sum") == pytest.approx(12.5e-6)
    assert first.value("dram__bytes.sum.per_second") == pytest.approx(1234.5e9)
    assert first.value("launch__grid_size") == 2048
    assert launches[1].value("launch__shared_mem_per_block_dynamic") == pytest.approx(16500)
    assert launches[2].value("gpu__time_duration.sum") is None  # n/a stays missing


def test_parser_skips_noise_and_starts_a_new_block_at_each_header():
    twice = SAMPLE + "some application output\n" + SAMPLE
    assert len(ncu.parse_raw_csv(twice)) == 6
    assert ncu.parse_raw_csv("==ERROR== The application returned an error code (1).\n") == []
    truncated = SAMPLE.replace(_row(1, CUDA_NAME, "(288, 1, 1)", "(1, 1, 1)", CUDA_VALUES),
                               '"1","4242","python3"')
    assert [lc.text("ID") for lc in ncu.parse_raw_csv(truncated)] == ["0", "2"]


def test_summary_rows_carry_the_columns_the_readme_explains():
    job = {"name": "video_predictor_fwd_fp32", "op": "video_predictor", "phase": "fwd",
           "dtype": "fp32", "nvtx_range": "s2v/video_predictor/fwd", "nvtx_filter": "s2v/"}
    rows = ncu.summarize(ncu.parse_raw_csv(SAMPLE), job)
    assert len(rows) == 3 and all(set(r) == set(ncu.SUMMARY_COLUMNS) for r in rows)
    tri, cud, missing = rows
    assert tri["kernel"] == "_video_predictor_fwd_kernel"
    assert tri["nvtx_range"] == "s2v/video_predictor/fwd" and tri["dtype"] == "fp32"
    assert tri["duration_us"] == pytest.approx(12.5)
    assert tri["dram_gbs"] == pytest.approx(1234.5)
    assert tri["dram_pct_peak"] == pytest.approx(38.25)
    assert tri["mem_pct_peak"] == pytest.approx(40.5)
    assert tri["sm_pct_peak"] == pytest.approx(72.5)
    assert tri["achieved_occupancy_pct"] == pytest.approx(45.75)
    assert tri["theoretical_occupancy_pct"] == pytest.approx(50)
    assert tri["registers_per_thread"] == 96
    assert (tri["block"], tri["grid"]) == ("(128,1,1)", "(2048,1,1)")
    assert tri["limiter"] == "compute"
    assert cud["kernel"] == "s2v::dgru::forward_kernel<float>"
    assert cud["duration_us"] == pytest.approx(3100)
    assert cud["shared_static_bytes"] == 1024 and cud["shared_dynamic_bytes"] == 16500
    assert cud["limiter"] == "latency"
    assert missing["duration_us"] is None and missing["limiter"] == ""


def test_top_stalls_from_the_warp_state_section():
    """The three largest stall reasons (cycles per issued instruction) of a launch,
    whatever reasons the ncu version reports; 'selected' is not a stall; nothing when
    the section did not run."""
    stalls = [("smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio", "7.25"),
              ("smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio",
               "2.5"),
              ("smsp__average_warps_issue_stalled_selected_per_issue_active.ratio", "9"),
              ("smsp__average_warps_issue_stalled_short_scoreboard_per_issue_active.ratio",
               "1,250.5"),
              ("smsp__average_warps_issue_stalled_new_reason_per_issue_active.ratio", "0.5"),
              ("smsp__average_warps_issue_stalled_wait_per_issue_active.ratio", "n/a"),
              ("smsp__issue_active.avg.pct_of_peak_sustained_active", "3.5")]
    text = "\n".join([
        _q(FIXED + [m for m, _ in stalls]),
        _q([""] * len(FIXED) + ["" if m.endswith("ratio") else "%" for m, _ in stalls]),
        _row(0, CUDA_NAME, "(864, 1, 1)", "(1, 1, 1)", [v for _, v in stalls]),
    ])
    (launch,) = ncu.parse_raw_csv(text)
    assert ncu.top_stalls(launch) == "short_scoreboard 1.25e+03; barrier 7.25; long_scoreboard 2.5"
    assert ncu.top_stalls(launch, n=5).endswith("; new_reason 0.5")
    (row,) = ncu.summarize([launch])
    assert row["issue_active_pct"] == pytest.approx(3.5)
    assert "(short_scoreboard" in ncu.format_table([row])
    (plain,) = ncu.summarize(ncu.parse_raw_csv(SAMPLE))[:1]
    assert plain["top_stalls"] == "" and plain["issue_active_pct"] is None


def test_limiter_rule():
    assert ncu.limiter(80, 30) == "compute"
    assert ncu.limiter(20, 85) == "memory"
    assert ncu.limiter(30, 40) == "latency"
    assert ncu.limiter(None, None) == ""


def test_short_kernel_names():
    assert ncu.short_kernel_name("_video_predictor_bwd_kernel") == "_video_predictor_bwd_kernel"
    assert ncu.short_kernel_name(CUDA_NAME) == "s2v::dgru::forward_kernel<float>"
    assert ncu.short_kernel_name("void k<(int)3>(float*)") == "k<(int)3>"


def test_summary_csv_and_table(tmp_path):
    rows = ncu.summarize(ncu.parse_raw_csv(SAMPLE), {"name": "j"})
    path = ncu.write_summary(rows, str(tmp_path / "s" / "ncu_summary.csv"))
    with open(path, newline="") as f:
        back = list(csv.DictReader(f))
    assert tuple(back[0]) == ncu.SUMMARY_COLUMNS and len(back) == 3
    assert back[2]["duration_us"] == ""
    table = ncu.format_table(rows)
    assert "_video_predictor_fwd_kernel" in table and "latency" in table


def test_jobs_cover_every_op_phase_and_dtype():
    jobs = ncu.all_jobs()
    assert len(jobs) == len(ncu.OPS) * len(ncu.PHASES) * len(ncu.DTYPES)
    assert {j["nvtx_range"] for j in jobs} >= {
        "s2v/video_predictor/fwd", "s2v/video_predictor/bwd", "s2v/dirconv_gru/fwd",
        "s2v/dilated_gru/fwd", "s2v/dilated_gru/bwd"}


def test_ncu_command_has_the_filters_and_sections():
    job = ncu.all_jobs(("dilated_gru",), ("bwd",), ("bf16",))[0]
    cmd = ncu.ncu_command("/x/ncu", job, "/tmp/r", 8, nvtx_filter=True, python="py")
    text = " ".join(cmd)
    for flag in ("--target-processes all", "--profile-from-start off", "--nvtx",
                 "--nvtx-include s2v/", "--launch-count 8", "--section SpeedOfLight",
                 "--section Occupancy", "--section LaunchStats",
                 "--section MemoryWorkloadAnalysis", "--section WarpStateStats",
                 "--section SchedulerStats", "--clock-control none",
                 "--export /tmp/r"):
        assert flag in text
    assert f"regex:{ncu.KERNEL_REGEX['dilated_gru']}" in cmd
    assert cmd[-7:] == ["py", "-m", "profiling.ncu", "--target", "dilated_gru", "bwd", "bf16"]
    plain = ncu.ncu_command("/x/ncu", job, "/tmp/r", 0, nvtx_filter=False, all_kernels=True)
    assert "--nvtx-include" not in plain and "--kernel-name" not in plain
    assert "--launch-count" not in plain


def test_cli_refuses_cleanly_without_ncu_or_gpu():
    """A real subprocess: no ncu (a path that does not exist) and no visible GPU."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    env.pop("NCU", None)
    proc = subprocess.run([sys.executable, "-m", "profiling.ncu", "--ncu", "/nonexistent/ncu"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot profile here" in lines[0]
    assert "ncu not found" in lines[0] and "no CUDA GPU" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("have_ncu, have_gpu", [(False, True), (True, False)])
def test_driver_exits_2_when_either_is_missing(monkeypatch, capsys, tmp_path, have_ncu,
                                               have_gpu):
    monkeypatch.setattr(ncu, "find_ncu", lambda explicit=None: "/bin/true" if have_ncu else None)
    monkeypatch.setattr(ncu, "gpu_unavailable", lambda: None if have_gpu else "no CUDA GPU here")
    assert ncu.main(["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert ("ncu not found" in err[0]) == (not have_ncu)
    assert ("no CUDA GPU" in err[0]) == (not have_gpu)
    assert not os.listdir(tmp_path)


FAKE_NCU = r'''#!{python}
"""Stands in for ncu: records its argv, writes a report, prints SAMPLE on --import."""
import os, sys
argv = sys.argv[1:]
with open(os.environ["FAKE_NCU_LOG"], "a") as f:
    f.write(" ".join(argv) + "\n")
if "--import" in argv:
    sys.stdout.write(open(os.environ["FAKE_NCU_SAMPLE"]).read())
    sys.exit(0)
print("==PROF== Connected to process 1")
if "--nvtx-include" in argv and os.environ.get("FAKE_NCU_NVTX_MATCHES") == "0":
    print("==WARNING== No kernels were profiled.")
    sys.exit(0)
open(argv[argv.index("--export") + 1] + ".ncu-rep", "w").write("report")
'''


@pytest.mark.parametrize("nvtx_matches", ["1", "0"])
def test_driver_end_to_end_with_a_stand_in_ncu(monkeypatch, tmp_path, capsys, nvtx_matches):
    fake = tmp_path / "ncu"
    fake.write_text(FAKE_NCU.replace("{python}", sys.executable))
    fake.chmod(0o755)
    sample = tmp_path / "sample.csv"
    sample.write_text(SAMPLE)
    log = tmp_path / "argv.log"
    monkeypatch.setenv("FAKE_NCU_LOG", str(log))
    monkeypatch.setenv("FAKE_NCU_SAMPLE", str(sample))
    monkeypatch.setenv("FAKE_NCU_NVTX_MATCHES", nvtx_matches)
    monkeypatch.setattr(ncu, "gpu_unavailable", lambda: None)
    monkeypatch.setattr(ncu, "job_unavailable", lambda op: "no CUDA ext" if op == "dilated_gru"
                        else None)
    out = tmp_path / "out"
    rc = ncu.main(["--ncu", str(fake), "--out", str(out), "--dtypes", "fp32",
                   "--ops", "video_predictor,dilated_gru", "--launch-count", "4"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "skipped dilated_gru_fwd_fp32: no CUDA ext" in printed
    with open(out / "ncu_summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["job"] for r in rows} == {"video_predictor_fwd_fp32", "video_predictor_bwd_fp32"}
    assert len(rows) == 6
    assert {r["nvtx_filter"] for r in rows} == ({"s2v/"} if nvtx_matches == "1" else {"none"})
    assert (out / "raw" / "video_predictor_bwd_fp32.csv").read_text() == SAMPLE
    assert not (out / "reps").exists()  # reports kept only with --rep
    calls = log.read_text().splitlines()
    profile_calls = [c for c in calls if "--import" not in c]
    assert len(profile_calls) == (2 if nvtx_matches == "1" else 4)
    assert all("--launch-count 4" in c and "--target video_predictor" in c
               for c in profile_calls)


def test_dilated_gru_regex_matches_every_cuda_kernel():
    """Every __global__ of the dilated GRU sources (both kernel families) is
    profiled, and nothing else: ncu's regex is matched against the demangled base
    names it reports, e.g. ``s2v::dgru::forward_grouped_kernel``."""
    import re
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "csrc" / "dilated_gru"
    names = set()
    for cu in src.glob("*.cu"):
        text = cu.read_text()
        names |= set(re.findall(r"__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s*)?(\w+)",
                                text))
    assert {"forward_kernel", "backward_kernel", "forward_grouped_kernel",
            "backward_grouped_kernel"} <= names
    pattern = re.compile(ncu.KERNEL_REGEX["dilated_gru"])
    for name in names:
        assert pattern.search(f"s2v::dgru::{name}"), name
    for other in ("elementwise_kernel", "reduce_kernel", "vectorized_elementwise_kernel",
                  "CatArrayBatchedCopy_contig"):
        assert not pattern.search(other), other


def test_parse_never_overwrites_its_input(tmp_path, capsys):
    """`--parse DIR/*.csv` over a folder that already holds a summary must not replace
    that summary with an empty one."""
    summary = tmp_path / "ncu_summary.csv"
    summary.write_text("job,kernel\nx,y\n")
    assert ncu.parse_files([str(summary)], None) == 2
    assert summary.read_text() == "job,kernel\nx,y\n"
    assert "one of the inputs" in capsys.readouterr().err
    assert ncu.parse_files([str(tmp_path / "missing.csv")], None) == 2
