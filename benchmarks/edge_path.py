"""Benchmark the edge path (decode -> preprocess -> reconstruct -> score) on real images, side by side.

    python benchmarks/edge_path.py --data ../shared/data/mvtec_screw [--model exported/screw.onnx]
                                   [--run runs/screw] [--out benchmarks/results.json]

Measures on this machine, in one run: per-stage latency (p50/p95, batch 1) of the edge path; the same
model in torch eager (needs --run, the training run folder, and torch) and the ratio; folder throughput of
`insightad-edge score` with several worker counts; peak RSS of an edge-only scoring process; import
times; and an INT8 (onnxruntime static quantisation, QDQ) variant's speed and AUROC against FP32. It
never fails on a slow number: it reports. Correctness lives in tests/.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from insightad_edge import Detector, preprocess
from insightad_edge.detector import default_model_path, run_pipeline
from insightad_train.data import load_dataset  # torch-free module
from insightad_train.evaluate import dataset_level, equalise  # torch-free module
from insightad_train.metrics import auroc


def percentiles(samples: list[float]) -> dict:
    values = np.array(samples) * 1000.0
    return {"p50_ms": float(np.percentile(values, 50)), "p95_ms": float(np.percentile(values, 95))}


def machine() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import cv2
    import onnxruntime

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "opencv": cv2.__version__, "numpy": np.__version__}


def stage_latency(detector, blobs: list[bytes], infers: dict, repeats: int) -> dict:
    """Per-stage times for batch 1 through each named model call: the edge's own pipeline, timed by itself. The
    calls take turns pass by pass (``repeats`` passes over the images each), so a stretch of a slower machine
    (this VM has them) weighs on all alike; turns image by image would not do: one runtime's threads still
    spinning after its call slow the other's next call down."""
    times = {name: {"decode": [], "preprocess": [], "reconstruct": [], "score": [], "total": []} for name in infers}
    for _ in range(repeats):
        for name, infer in infers.items():
            for blob in blobs:
                stages = run_pipeline([blob], detector.metadata, detector.threshold, infer)[0].timings_ms
                for key, value in stages.items():
                    times[name][key].append(value / 1000.0)
                times[name]["total"].append(sum(stages.values()) / 1000.0)
    return {name: {stage: percentiles(values) for stage, values in stages.items()} for name, stages in times.items()}


def paced(model: Path, blob: bytes, seconds: float = 4.0, rounds: int = 2) -> dict:
    """onnxruntime's pool threads spinning between calls (its default) against waiting (the edge's): the CPU this
    process takes and the latency of the whole path, at a camera's pace (10 and 30 frames/s) and flat out. The
    two take turns, ``rounds`` times, so a slower stretch of the machine weighs on both alike."""
    from insightad_edge import detector as edge

    edge.SPIN_BETWEEN_CALLS = True
    detectors = {"spinning": Detector(model)}
    edge.SPIN_BETWEEN_CALLS = False
    detectors["waiting"] = Detector(model)
    frame = preprocess.load(blob)  # decoded once: a camera hands the station arrays
    found: dict = {}
    for _ in range(rounds):
        for rate in (10, 30, None):
            for name, detector in detectors.items():
                for _ in range(5):
                    detector(frame)
                latencies, began, cpu = [], time.perf_counter(), time.process_time()
                while time.perf_counter() - began < seconds:
                    start = time.perf_counter()
                    detector(frame)
                    latencies.append(time.perf_counter() - start)
                    if rate:
                        time.sleep(max(0.0, 1.0 / rate - (time.perf_counter() - start)))
                elapsed = time.perf_counter() - began
                key = f"{rate} frames/s" if rate else "flat out"
                found.setdefault(key, {}).setdefault(name, []).append(
                    {"frames_per_s": len(latencies) / elapsed, "cpu_share_of_a_core": (time.process_time() - cpu) / elapsed,
                     **percentiles(latencies)})
    return {key: {name: {k: statistics.median(run[k] for run in runs) for k in runs[0]} for name, runs in pair.items()}
            for key, pair in found.items()}


def torch_infer_for(run: Path, threads: int):
    import torch

    from insightad_train.fit import TorchInfer, load_run

    torch.set_num_threads(threads)
    mapper, _ = load_run(run)
    return TorchInfer(mapper)


def folder_throughput(model: Path, folder: Path, count: int, workers: int) -> float:
    command = [sys.executable, "-m", "insightad_edge.cli", "score", str(folder), "--model", str(model),
               "--format", "jsonl", "--output", os.devnull, "--workers", str(workers)]
    began = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return count / (time.perf_counter() - began)


def peak_rss_mb(model: Path, folder: Path) -> float:
    """Peak RSS of a fresh process that scores the folder with torch blocked.

    Read from VmHWM, which starts afresh at exec; ru_maxrss would also count the parent's pages that the
    child held between fork and exec.
    """
    script = ("import sys; sys.modules['torch'] = None\n"
              "from insightad_edge.cli import main\n"
              f"try:\n    main(['score', {str(folder)!r}, '--model', {str(model)!r}, '--format', 'jsonl', "
              f"'--output', {os.devnull!r}])\nexcept SystemExit:\n    pass\n"
              "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) / 1024.0


def import_time(statement: str, repeats: int = 5) -> float:
    script = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    runs = [float(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout)
            for _ in range(repeats)]
    return statistics.median(runs)


def load_times(model: Path, repeats: int = 5) -> dict:
    """Loading the model (read, seal check, session, graph check), and the seal check alone, median ms."""
    import onnxruntime as ort

    from insightad_edge import modelfile

    def median_ms(call) -> float:
        runs = []
        for _ in range(repeats):
            began = time.perf_counter()
            call()
            runs.append((time.perf_counter() - began) * 1000.0)
        return statistics.median(runs)

    data = model.read_bytes()
    recorded = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    seal = recorded.get(modelfile.SEAL_KEY)
    return {"detector": median_ms(lambda: Detector(model)),
            "seal_check": None if seal is None else median_ms(lambda: modelfile.is_sealed(data, seal, model))}


def quantise(model: Path, detector: Detector, calibration: list[bytes], out: Path) -> Path:
    """Static INT8 quantisation (QDQ) with onnxruntime's own tools, calibrated on good images."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{detector.metadata.input_name: preprocess.prepare(
                preprocess.decode(b), detector.metadata.preprocess).input[None]} for b in calibration])

        def get_next(self):
            return next(self.items, None)

    prepared = out.with_name("prepared.onnx")
    quant_pre_process(str(model), str(prepared))
    quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    # carry the contract over, not the seal: it vouches for the FP32 file, and this one is another
    import onnx

    from insightad_edge.modelfile import SEAL_KEY

    source, target = onnx.load(str(model)), onnx.load(str(out))
    del target.metadata_props[:]
    target.metadata_props.extend(p for p in source.metadata_props if p.key != SEAL_KEY)
    onnx.save(target, str(out))
    return out


def equalised_auroc(detector: Detector, samples, level: float) -> float:
    labels = np.array([s.is_anomalous for s in samples])
    scores = [detector(equalise(preprocess.decode(s.path), "equalised_scale", level), not_inspectable="report").score
              for s in samples]
    scores = [np.inf if s is None else s for s in scores]
    return auroc(labels, np.array(scores))


@click.command()
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--run", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Training run folder of the same model, for the torch-eager comparison.")
@click.option("--images", default=40, show_default=True, help="Images for the latency runs.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("benchmarks/results.json"),
              show_default=True)
@click.option("--int8/--no-int8", default=True, show_default=True)
def main(data: Path, model: Path | None, run: Path | None, images: int, out: Path, int8: bool) -> None:
    model = model or default_model_path()
    dataset = load_dataset(data)
    paths = [s.path for s in dataset.test][:: max(1, len(dataset.test) // images)][:images]
    blobs = [p.read_bytes() for p in paths]
    cores = os.cpu_count() or 1
    detector = Detector(model)
    results: dict = {"machine": machine(), "model": str(model), "images": len(blobs),
                     "image_size": list(preprocess.decode(blobs[0]).shape)}

    infers = {"edge": detector.infer} | ({} if run is None else {"torch_eager": torch_infer_for(run, cores)})
    stage_latency(detector, blobs[:3], infers, 1)  # warm-up
    results.update(stage_latency(detector, blobs, infers, 4))
    results["spinning_vs_waiting"] = paced(model, blobs[0])
    if run is not None:
        for key in ("reconstruct", "total"):
            results[f"torch_over_edge_{key}"] = (results["torch_eager"][key]["p50_ms"]
                                                 / results["edge"][key]["p50_ms"])

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        for sample in dataset.test:  # the whole test split, so process start-up weighs little
            (folder / f"{sample.defect}_{sample.path.name}").write_bytes(sample.path.read_bytes())
        results["throughput_images"] = len(dataset.test)
        results["throughput_images_per_s"] = {
            f"workers={w}" + (" (default)" if w == cores else ""): folder_throughput(model, folder, len(dataset.test), w)
            for w in sorted({1, 2, cores, 2 * cores})}
        batched = blobs[:16]
        began = time.perf_counter()
        for i in range(0, len(batched), 8):
            detector.batch(batched[i:i + 8])
        results["in_process_batch8_images_per_s"] = len(batched) / (time.perf_counter() - began)
        results["peak_rss_mb_edge_scoring"] = peak_rss_mb(model, folder)

        results["load_ms"] = load_times(model)
        results["import_s"] = {"insightad_edge": import_time("import insightad_edge"),
                               "insightad_edge + Detector": import_time("from insightad_edge import Detector"),
                               "torch": import_time("import torch")}

        if int8:
            int8_path = quantise(model, detector, [p.read_bytes() for p in dataset.train[:32]], Path(tmp) / "int8.onnx")
            quantised = Detector(int8_path)
            pair = {"int8": quantised.infer, "fp32": detector.infer}  # the same metadata: one pipeline, two models
            stage_latency(detector, blobs[:3], pair, 1)
            latency = stage_latency(detector, blobs, pair, 4)
            results["int8"] = {
                "reconstruct_p50_ms": latency["int8"]["reconstruct"]["p50_ms"],
                "fp32_reconstruct_p50_ms": latency["fp32"]["reconstruct"]["p50_ms"],
                "size_mb": int8_path.stat().st_size / 1e6, "fp32_size_mb": model.stat().st_size / 1e6,
                "equalised_auroc": equalised_auroc(quantised, dataset.test, dataset_level(dataset.train)),
                "fp32_equalised_auroc": equalised_auroc(detector, dataset.test, dataset_level(dataset.train)),
            }

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(render(results))


def render(r: dict) -> str:
    m = r["machine"]
    lines = [f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, onnxruntime {m['onnxruntime']}, "
             f"OpenCV {m['opencv']}", f"model: {r['model']}; {r['images']} images of {r['image_size'][1]}x{r['image_size'][0]}",
             "", f"{'stage (batch 1)':<16}{'edge p50':>10}{'edge p95':>10}{'torch p50':>11}{'torch p95':>11}"]
    for stage in ("decode", "preprocess", "reconstruct", "score", "total"):
        e = r["edge"][stage]
        t = r.get("torch_eager", {}).get(stage)
        lines.append(f"{stage:<16}{e['p50_ms']:>9.2f} {e['p95_ms']:>9.2f} "
                     + (f"{t['p50_ms']:>10.2f} {t['p95_ms']:>10.2f}" if t else f"{'-':>10} {'-':>10}"))
    if "torch_over_edge_total" in r:
        lines.append(f"torch eager / edge: reconstruct {r['torch_over_edge_reconstruct']:.2f}x, "
                     f"whole path {r['torch_over_edge_total']:.2f}x")
    lines.append("")
    lines.append("onnxruntime's threads between calls, whole path on a decoded frame: CPU of this process, p50")
    for pace, pair in r["spinning_vs_waiting"].items():
        spin, wait = pair["spinning"], pair["waiting"]
        lines.append(f"  {pace:<14} spinning {spin['cpu_share_of_a_core']:6.0%} of a core, {spin['p50_ms']:5.2f} ms, "
                     f"{spin['frames_per_s']:6.1f}/s | waiting {wait['cpu_share_of_a_core']:6.0%}, {wait['p50_ms']:5.2f} ms, "
                     f"{wait['frames_per_s']:6.1f}/s")
    lines.append("")
    for setting, value in r["throughput_images_per_s"].items():
        lines.append(f"insightad-edge score, {r['throughput_images']} images, {setting}: {value:.1f} images/s "
                     "(whole command, start-up included)")
    lines.append(f"in-process Detector.batch(8): {r['in_process_batch8_images_per_s']:.1f} images/s")
    lines.append(f"peak RSS, edge-only scoring process: {r['peak_rss_mb_edge_scoring']:.0f} MB")
    lines.append("import: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in r["import_s"].items()))
    load = r["load_ms"]
    lines.append(f"Detector load: {load['detector']:.0f} ms" + ("" if load["seal_check"] is None else
                 f", of which the seal check {load['seal_check']:.0f} ms ({load['seal_check'] / load['detector']:.0%})"))
    if "int8" in r:
        q = r["int8"]
        lines.append(f"INT8 (QDQ): reconstruct p50 {q['reconstruct_p50_ms']:.2f} ms "
                     f"vs FP32 {q['fp32_reconstruct_p50_ms']:.2f} ms; "
                     f"{q['size_mb']:.1f} MB vs {q['fp32_size_mb']:.1f} MB; equalised AUROC {q['equalised_auroc']:.3f} "
                     f"vs FP32 {q['fp32_equalised_auroc']:.3f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
