"""Where a run trains: the checks a configuration passes on this machine before anything is written, the device in words."""

from __future__ import annotations

import platform
from pathlib import Path

from rnnstudy.errors import ConfigError
from rnnstudy.lazy import LazyModule
from rnnstudy.run.config import RunConfig, TrainConfig

torch = LazyModule("torch")
#: Present wherever the NVIDIA driver is loaded (also inside a container given GPUs); CUDA needs it.
NVIDIA_DRIVER = (Path("/proc/driver/nvidia"), Path("/dev/nvidiactl"))


def has_cuda() -> bool:
    """Whether a CUDA GPU is visible to this process (without the driver, answered without importing torch)."""
    return any(p.exists() for p in NVIDIA_DRIVER) and torch.cuda.is_available()


def uses_cuda(accelerator: str) -> bool:
    """Whether a run with this accelerator setting trains on a CUDA GPU (auto: where one is visible)."""
    return accelerator != "cpu" and has_cuda()


def device_name(accelerator: str = "auto", index: int | None = None) -> str:
    """The device a run with this accelerator setting (and GPU index) trains on, in words: on a GPU its index as CUDA
    numbers it, its name, its UUID (a MIG instance's own) and the ``CUDA_VISIBLE_DEVICES`` that index is read through,
    so a run names the physical GPU it trained on."""
    if uses_cuda(accelerator):
        import os

        i = index or 0
        props = torch.cuda.get_device_properties(i)
        uuid = getattr(props, "uuid", None)
        parts = [props.name, *([f"UUID {uuid}"] if uuid else [])]
        if visible := os.environ.get("CUDA_VISIBLE_DEVICES"):
            parts.append(f"CUDA_VISIBLE_DEVICES={visible}")
        return f"cuda:{i} ({', '.join(parts)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def check_device(cfg: RunConfig) -> None:
    """Raise ConfigError when the configured accelerator or GPU index does not exist here (before anything is written)."""
    t = cfg.train
    if t.accelerator == "gpu" and not has_cuda():
        raise ConfigError("train.accelerator = 'gpu': no CUDA device is visible here; allowed: auto, cpu")
    if t.devices is None:
        return
    count = torch.cuda.device_count() if has_cuda() else 0
    if t.devices >= count:
        allowed = f"0 .. {count - 1} (the GPUs visible here)" if count else "null (no GPU is visible here)"
        raise ConfigError(f"train.devices = {t.devices}: allowed: {allowed}")


def check_gpus(gpus: list[str]) -> None:
    """Raise ConfigError when a sweep asks for GPUs this process cannot use: a sweep that asked for GPUs trains on them or
    does not start (workers would otherwise train on the CPU under a banner that says GPUs)."""
    if not gpus:
        return
    asked = f"--gpus = {','.join(gpus)}"
    if not any(p.exists() for p in NVIDIA_DRIVER):
        raise ConfigError(f"{asked}: no NVIDIA driver is loaded here, so CUDA cannot run; allowed: '' (the CPU)")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"{asked}: torch {torch.__version__} cannot use CUDA here (torch.cuda.is_available() is False: a driver older "
            f"than its CUDA {torch.version.cuda}, or CUDA_VISIBLE_DEVICES hides the GPUs); allowed: '' (the CPU)"
        )
    import os

    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    # A worker's CUDA_VISIBLE_DEVICES replaces this process's: inside an allocation (SLURM without cgroups) only the
    # GPUs it already names may be given; elsewhere the indices CUDA sees. MIG and GPU UUIDs are CUDA's to resolve.
    allowed = visible or [str(i) for i in range(torch.cuda.device_count())]
    wrong = [g for g in gpus if g.isdigit() and g not in allowed]
    if wrong:
        where = "CUDA_VISIBLE_DEVICES names" if visible else "visible here"
        raise ConfigError(f"{asked}: no GPU {', '.join(wrong)} {where}; allowed: {', '.join(allowed)} or GPU/MIG UUIDs")


def compute_modes(smi_csv: str) -> dict[str, str]:
    """Each GPU's compute mode by its index and by its UUID, from the text of
    ``nvidia-smi --query-gpu=index,uuid,compute_mode --format=csv,noheader`` (lines that do not parse are left out)."""
    modes = {}
    for line in smi_csv.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[0].isdigit():
            modes[parts[0]] = modes[parts[1]] = parts[2]
    return modes


def query_compute_modes() -> dict[str, str]:
    """:func:`compute_modes` of this box's GPUs (empty where nvidia-smi does not answer)."""
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,uuid,compute_mode", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return {}
    return compute_modes(out)


def workers_per_gpu(gpus: list[str], workers: int, modes: dict[str, str]) -> dict[str, int]:
    """How many workers each GPU takes: ``workers``, but one where the GPU is in exclusive-process mode (a second
    process cannot create a context on it)."""
    return {g: 1 if modes.get(g, "").lower().startswith("exclusive") else workers for g in gpus}


def worker_threads(workers: int, environ: dict[str, str]) -> int:
    """Torch threads per worker process: the user's OMP_NUM_THREADS where set, else the cores shared out (at least 1)."""
    import os

    given = environ.get("OMP_NUM_THREADS")  # checked by the preflight (check_environment)
    return int(given) if given else max(1, (os.cpu_count() or 1) // workers)


def results_folder(cfg: RunConfig) -> Path:
    """The experiment's results folder, created; one that cannot be created is a configuration error."""
    folder = cfg.out / cfg.experiment
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        why = err.strerror or type(err).__name__
        raise ConfigError(
            f"out = {str(cfg.out)!r}: cannot create {str(folder)!r} ({why}); allowed: a folder you can write"
        ) from None
    return folder


def check_environment(environ: dict[str, str]) -> None:
    """Refuse, in one line, an environment variable the harness reads whose value it would silently ignore:
    ``OMP_NUM_THREADS`` (torch threads per process) must be a positive integer."""
    given = environ.get("OMP_NUM_THREADS")
    if given is not None and not (given.isdigit() and int(given) > 0):
        raise ConfigError(f"OMP_NUM_THREADS = {given!r} (environment): allowed: a positive integer (torch threads per "
                          "process), or unset (the cores shared out among the workers)")  # fmt: skip


def preflight(cfg: RunConfig) -> Path:
    """Every check a run or a sweep passes before it writes anything (environment, device, W&B mode and server, results
    folder); the folder."""
    import os

    from rnnstudy.run.tracking import check_mode

    check_environment(dict(os.environ))
    check_device(cfg)
    check_mode(cfg.wandb.mode)
    return results_folder(cfg)


def prepare(t: TrainConfig) -> str:
    """Set this process up for a run's training (TF32 as asked, subnormals flushed, cuBLAS deterministic where asked);
    the device type it trains on (``cuda`` or ``cpu``)."""
    import os

    set_tf32(t.tf32)
    flush_subnormals()
    if t.deterministic:  # cuBLAS refuses deterministic mode without a fixed workspace
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return "cuda" if uses_cuda(t.accelerator) else "cpu"


def set_tf32(allowed: bool) -> None:
    """TF32 for both cuBLAS and cuDNN, on or off together (PyTorch's default leaves cuDNN's on: 10-bit mantissas in RNNs)."""
    torch.backends.cuda.matmul.allow_tf32 = allowed
    torch.backends.cudnn.allow_tf32 = allowed


def flush_subnormals() -> None:
    """Flush float32 subnormals (below 1.2e-38) to zero on this CPU thread and every thread it starts afterwards.

    A long probe's answer gradient decays into the subnormal range, where x86 arithmetic can run tens of times
    slower; below float32's smallest normal number a gradient has lost its precision anyway. Called before any
    intra-op thread exists (the worker and the CLI call it first), it covers every thread of the backward.
    """
    torch.set_flush_denormal(True)
