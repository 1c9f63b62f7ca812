"""One collection restored by many processes: `mprnet-restore` started by a launcher (accelerate launch, torchrun).

    accelerate launch --multi_gpu --num_processes 4 -m mprnet_hf.restore photos/ --task denoise --output restored/
    python -m torch.distributed.run --nproc-per-node 2 -m mprnet_hf.restore photos/ --task deblur --output out/

A launcher starts the same command in every process and says which one each is through the environment (WORLD_SIZE,
RANK, LOCAL_RANK, GROUP_RANK, MASTER_ADDR, MASTER_PORT, as torchrun sets them; accelerate launch starts torchrun). Every
process checks the arguments, lists the inputs and loads the models itself; then they compare what they found over a
gloo process group (CPU tensors only: the messages are a few counts and paths, and gloo needs no GPU), share out the
files that are not done yet, restore their own share, and the main process prints the one summary of them all.

Without WORLD_SIZE, or with WORLD_SIZE=1, nothing here starts a process group and the command runs as it always did.
"""

import contextlib
import hashlib
import io
import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from PIL import Image

# Processes that finish their share early wait for the others at the closing count, a collective bound by the process
# group's timeout (gloo's default, 30 minutes, would end a long run on many GPUs whose shares finish hours apart).
# A process that dies does not leave the others waiting that long: the launcher stops them all.
WAIT_FOR_OTHERS = timedelta(days=7)


class ShareError(ValueError):
    """The launcher's environment or the processes' view of the inputs is unusable: a usage error (exit status 2)."""


def _environment_int(environ, name: str, default: int | None = None) -> int:
    value = environ.get(name)
    if value is None:
        if default is None:
            raise ShareError(
                f"{name} is not set although WORLD_SIZE is; start the command with accelerate launch or "
                "torchrun, which set both"
            )
        return default
    try:
        return int(value)
    except ValueError:
        raise ShareError(
            f"{name}={value!r} is not a whole number; start the command with accelerate launch or "
            "torchrun, which set it"
        ) from None


@dataclass
class Failure:
    """A file that could not be restored, and which process tried."""

    source: str
    reason: str
    rank: int
    node: int


@dataclass
class Totals:
    restored: int = 0
    skipped: int = 0
    failures: list[Failure] = field(default_factory=list)


@dataclass
class Share:
    """This process's place in the run: rank `rank` of `world_size` processes, `local_rank` on its machine, machine
    `node`. The default is a run of one process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    node: int = 0
    owns_group: bool = False

    @classmethod
    def from_environment(cls, environ=None) -> "Share":
        environ = os.environ if environ is None else environ
        world_size = _environment_int(environ, "WORLD_SIZE", default=1)
        if world_size < 1:
            raise ShareError(f"WORLD_SIZE={world_size} must be at least 1")
        if world_size == 1:
            return cls()
        rank = _environment_int(environ, "RANK")
        if not 0 <= rank < world_size:
            raise ShareError(f"RANK={rank} is outside 0..{world_size - 1} (WORLD_SIZE={world_size})")
        local_rank = _environment_int(environ, "LOCAL_RANK", default=0)
        if local_rank < 0:
            raise ShareError(f"LOCAL_RANK={local_rank} must not be negative")
        # GROUP_RANK (torchrun: the machine's rank) tells which processes print to the same terminal as the main one.
        node = _environment_int(environ, "GROUP_RANK", default=0)
        return cls(rank=rank, world_size=world_size, local_rank=local_rank, node=node)

    @property
    def many(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def quiet_unless_main(self):
        """Argument errors and --help are the same in every process (the launcher gives each the same command line):
        only the main process prints them."""
        if self.is_main:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
        return stack

    def start(self) -> None:
        """Joins the process group (gloo over TCP to MASTER_ADDR:MASTER_PORT) when there are several processes."""
        if not self.many:
            return
        if dist.is_available() and dist.is_initialized():
            # Called from a program that already runs distributed (a training script, say): its group is ours.
            if (dist.get_rank(), dist.get_world_size()) != (self.rank, self.world_size):
                raise ShareError("the running process group disagrees with RANK/WORLD_SIZE")
            return
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if not os.environ.get(name):
                raise ShareError(
                    f"{name} is not set although WORLD_SIZE is; start the command with accelerate launch "
                    "or torchrun, which set it"
                )
        try:
            dist.init_process_group("gloo", rank=self.rank, world_size=self.world_size, timeout=WAIT_FOR_OTHERS)
        except (RuntimeError, ValueError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ShareError(
                f"could not reach the other processes at {os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} "
                f"({reason})"
            ) from None
        self.owns_group = True

    def stop(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False

    def gather(self, value) -> list:
        """Every process's `value`, in rank order, in every process."""
        if not self.many:
            return [value]
        values = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def agree(self, error: str | None, inputs: list[tuple[Path, Path]]) -> str | None:
        """The usage error every process exits with, or None. Each process reports its own setup error (or None) and
        a digest of the (input, output) pairs it found; the run goes on only if none failed and all found the same
        files, since each then restores the files at its own positions of that list."""
        digest = hashlib.sha256(
            "\n".join(f"{source.resolve()}\0{output.resolve()}" for source, output in inputs).encode()
        ).hexdigest()
        reports = self.gather((error, digest, len(inputs)))
        errors = {}
        for rank, (message, _digest, _count) in enumerate(reports):
            if message is not None:
                errors.setdefault(message, []).append(rank)
        if errors:
            if len(errors) == 1 and len(next(iter(errors.values()))) == self.world_size:
                return next(iter(errors))  # the usual case: the same mistake seen by every process
            return "; ".join(f"{_ranks(ranks)}: {message}" for message, ranks in errors.items())
        if len({digest for _error, digest, _count in reports}) > 1:
            counts = ", ".join(f"process {rank}: {count}" for rank, (_e, _d, count) in enumerate(reports))
            return (
                f"the processes found different input files ({counts}); put the inputs and --output where every "
                "machine sees them at the same path, and leave them unchanged while the run starts"
            )
        return None

    def assign(self, pending: list[bool], sources: list[Path]) -> list[int]:
        """Positions of the files this process restores, in list order. Files not pending (already done) go to
        nobody. The others are balanced by pixel count, largest first, each to the process with the fewest pixels
        so far (ties to the lowest rank): deterministic, so every process computes the same assignment. Each process
        reads the image headers of every world_size-th pending file and the sizes are gathered. Every process uses the
        main process's `pending`: each computes its own from the outputs it sees, and views of a shared disk may
        differ (an output still being written, a cache), which would split the files differently or fail here."""
        if not self.many:
            return [index for index, todo in enumerate(pending) if todo]
        pending = self.gather(pending)[0]
        todo = [index for index, flag in enumerate(pending) if flag]
        mine = {index: pixel_count(sources[index]) for index in todo[self.rank :: self.world_size]}
        weights = {}
        for part in self.gather(mine):
            weights.update(part)
        loads = [0] * self.world_size
        owner = {}
        for index in sorted(todo, key=lambda index: (-weights[index], index)):
            rank = min(range(self.world_size), key=lambda rank: (loads[rank], rank))
            owner[index] = rank
            # A file whose header cannot be read fails at once on its process: it still counts one, so that several
            # of them do not all land on one process.
            loads[rank] += max(weights[index], 1)
        return [index for index in todo if owner[index] == self.rank]

    def total(self, restored: int, skipped: int, failures: list[tuple[Path, str]]) -> Totals:
        """The counts of every process added up (in every process: each exits with the run's status)."""
        mine = (restored, skipped, [Failure(str(source), reason, self.rank, self.node) for source, reason in failures])
        totals = Totals()
        for part_restored, part_skipped, part_failures in self.gather(mine):
            totals.restored += part_restored
            totals.skipped += part_skipped
            totals.failures.extend(part_failures)
        return totals

    def finish(self) -> None:
        """Waits until every process got here: the main process has printed the summary by then, so a launcher that
        stops the others as soon as one exits with status 1 cannot cut it off."""
        if self.many:
            dist.barrier()


def _ranks(ranks: list[int]) -> str:
    return ("process " if len(ranks) == 1 else "processes ") + ", ".join(map(str, ranks))


def pixel_count(path: Path) -> int:
    """Width times height from the image's header (no decoding); 0 for a file that cannot be opened."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Exception:  # noqa: BLE001 (any failure to open: the file is reported when its process restores it)
        return 0
    return width * height


def device_for(share: Share, device: torch.device) -> torch.device:
    """One GPU per process on its machine (LOCAL_RANK), as accelerate launch --multi_gpu and torchrun expect."""
    if share.many and device.type == "cuda":
        device = torch.device("cuda", share.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device
