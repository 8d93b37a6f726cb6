"""Where and how a run computes: the device, bf16 autocast, CPU threads, this process's rank, the
code's git sha.

    compute = resolve_compute("auto", "auto")   # Compute(device=cpu|cuda, bf16=True|False)
    with compute.autocast(): ...                # bf16 autocast when on, else nothing
    threads = use_threads("auto")               # torch's CPU threads (trainer.threads), in this process and
                                                # its children
    ranks = from_torchrun() or Ranks()          # rank, world size, local rank
"""
from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import SpecrepError

log = logging.getLogger("specrep")
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")   # what child processes read before their torch starts
ENV_THREADS = os.environ.get("OMP_NUM_THREADS", "")    # the user's, before use_threads exports its own


def resolve_device(name: str, key: str = "trainer.device") -> torch.device:
    """cpu, cuda, or auto (cuda when visible); `key` names the setting in the error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise SpecrepError(f"{key}=cuda but no CUDA device is visible: use {key}=auto or {key}=cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def resolve_bf16(precision: str, device: torch.device) -> bool:
    """bf16 autocast: on CUDA, and on CPUs with native bf16 (AVX512-BF16 or AMX) whose AVX-512 kernels
    ATen uses (not under ATEN_CPU_CAPABILITY=avx2, say); fp32 otherwise."""
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    if not torch.backends.cpu.get_cpu_capability().upper().startswith("AVX512"):
        return False   # the bf16 kernels ATen would run are not the native ones: fp32 is faster
    return bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
                or getattr(cpu, "_is_amx_tile_supported", lambda: False)())


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on `device` when asked, else nothing."""
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@dataclass(frozen=True)
class Compute:
    """The device a run computes on and whether it does so under bf16 autocast."""
    device: torch.device
    bf16: bool

    @property
    def precision(self) -> str:
        return "bf16" if self.bf16 else "fp32"

    def autocast(self):
        return autocast(self.device, self.bf16)

    def synchronize(self) -> None:
        """Wait for the device (a no-op on the CPU, whose ops are synchronous)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def resolve_compute(device: str, precision: str, key: str = "device") -> Compute:
    resolved = resolve_device(device, key)
    return Compute(resolved, resolve_bf16(precision, resolved))


def allowed_cpus() -> set:
    """The logical CPUs this process may run on (its affinity: taskset, a cgroup cpuset)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):   # no affinity on this platform
        return set(range(os.cpu_count() or 1))


def physical_cores(cpus: set | None = None, sysfs: Path = Path("/sys/devices/system/cpu")) -> int:
    """The physical cores among `cpus` (default: allowed_cpus()): hyper-threads of one core count
    once, read from Linux's topology (each CPU's thread_siblings_list names its core's threads); the
    number of CPUs where the topology cannot be read."""
    cpus = allowed_cpus() if cpus is None else cpus
    cores = set()
    for cpu in cpus:
        try:
            cores.add((sysfs / f"cpu{cpu}" / "topology" / "thread_siblings_list").read_text().strip())
        except OSError:
            return len(cpus)
    return max(1, len(cores))


def resolve_threads(setting: int | str, processes: int = 1) -> int:
    """torch's CPU threads for trainer.threads (or eval's threads): an int as given; auto: the
    environment's OMP_NUM_THREADS when set, else the physical cores this process may use, shared
    among the `processes` of this run on this machine (spawned or torchrun ranks)."""
    if setting != "auto":
        return int(setting)
    if ENV_THREADS.isdigit() and int(ENV_THREADS) > 0:
        return int(ENV_THREADS)
    return max(1, physical_cores() // max(1, processes))


def busy_cores(threads: int, load: float | None = None, cpus: int | None = None,
               machine: int | None = None, key: str = "trainer.threads", auto: bool = False) -> str | None:
    """One line when the cores are already busy with other work, else None; `auto`: the line says
    that auto takes one thread instead of `threads`, else that `key`=1 would run faster.

    The 1-minute load average counts the runnable processes of the whole machine (`machine` CPUs); the
    share on the `cpus` this process may use is load x cpus / machine. Busy means that share exceeds
    cpus - 0.5: every core already has other work, so each of torch's threads waits its turn, and a
    parallel region ends only when its slowest thread does; one thread then runs faster (on a 2-core
    machine at load 4, a default run took 17 min 41 s with 2 threads and 3 min 27 s with 1)."""
    if threads <= 1:
        return None
    try:
        load = os.getloadavg()[0] if load is None else load
    except OSError:   # no load average on this platform
        return None
    cpus = len(allowed_cpus()) if cpus is None else cpus
    machine = max(cpus, os.cpu_count() or cpus) if machine is None else machine
    if load * cpus / machine <= cpus - 0.5:
        return None
    where = (f"the CPUs are busy with other work (load average {load:.1f} on {machine} CPUs, {cpus} of them "
             "this process's)")
    if auto:
        return f"{where}: {key}=auto takes 1 thread, which runs faster here ({key}={threads} uses {threads})"
    return f"{where}: {threads} threads will wait on each other; {key}=1 runs faster here"


def use_threads(setting: int | str, processes: int = 1, announce: bool = True,
                key: str = "trainer.threads") -> int:
    """Resolve `setting` (resolve_threads), set torch's intra-op threads to it and export it to child
    processes (OMP_NUM_THREADS, MKL_NUM_THREADS: spawned ranks, DataLoader workers); with `announce`,
    log the count and, when busy_cores says so, the busy line naming `key`. auto on cores already busy
    with other work (busy_cores) takes one thread: more would wait on each other. The thread count."""
    from_env = setting == "auto" and ENV_THREADS.isdigit() and int(ENV_THREADS) > 0
    threads = resolve_threads(setting, processes)
    adapts = setting == "auto" and not from_env
    busy = busy_cores(threads, key=key, auto=adapts)
    if busy and adapts:
        threads = 1
    torch.set_num_threads(threads)
    for name in THREAD_ENV:
        os.environ[name] = str(threads)
    if announce:
        why = ""
        if setting == "auto":
            why = (" (auto: OMP_NUM_THREADS)" if from_env else " (auto: one, the cores being busy)" if busy
                   else " (auto: the physical cores this process may use)")
        log.info(f"CPU threads: {threads}{why}")
        if busy:
            log.warning(busy)
    return threads


@dataclass(frozen=True)
class Ranks:
    rank: int = 0          # this process in the run
    world: int = 1         # processes in the run
    local_rank: int = 0    # this process on its node: its GPU index

    @property
    def main(self) -> bool:
        return self.rank == 0


def from_torchrun() -> Ranks | None:
    """The ranks torchrun (or any launcher setting RANK/WORLD_SIZE/LOCAL_RANK) gave this process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def git_sha() -> str | None:
    """The commit of the specrep source tree, when it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
