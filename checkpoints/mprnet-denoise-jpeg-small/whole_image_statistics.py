"""Whole-image channel-attention statistics for tiled restoration.

Every channel-attention block gates its channels by their mean over everything it sees: a quarter of the image in
stage 1's encoder, a half in stage 1's decoder and stage 2's encoder, the whole image in stage 2's decoder and in
stage 3. Restored tile by tile, a block would average over a tile's quarters, halves and whole instead, and a model
that reads these means (the bundled denoiser seems to estimate the noise level from them) restores each tile
differently from the whole photo.

`WholeImageStatistics` gives every tile the means the untiled model uses, in extra passes over the tiles:

* recording: for each channel-attention call, the sum of its input features over the pixels each tile owns (its
  share of the overlaps, split in the middle), added up per quarter / half / whole of the padded image: the regions
  the untiled model averages over (exactly so for a single tile; with several, the up to 7 rows and columns of padding
  are left out, and downscaled features of a tile that starts between grid points sample a shifted grid);
* replaying: each feature pixel of a tile is gated by the recorded mean of the image region it lies in (a tile
  quarter that straddles two image quarters gets a per-pixel map of means).

The first recording pass runs with each tile's own gates, so its means are slightly off; each further recording pass
replays the previous one's means and records again (measured in the project's performance docs).
Test-time local statistics (`config.local_attention_window`) need none of this: their means are local already.
"""

import contextlib

import torch

from .modeling_mprnet import SIZE_MULTIPLE, ChannelAttention, MPRNetModel


def owned_spans(starts: list[int], tile: int, length: int) -> list[range]:
    """The part of each tile that it alone accounts for: neighbours split their overlap in the middle."""
    boundaries = [0] + [(previous + tile + start) // 2 for previous, start in zip(starts, starts[1:])] + [length]
    return [range(start, stop) for start, stop in zip(boundaries, boundaries[1:])]


def part_origins(height: int, width: int, parts: int) -> list[tuple[int, int]]:
    """Top-left corners of the whole (1), the top and bottom halves (2) or the four quarters (4), in the order in which
    `MPRNetModel.restore_padded` stacks them along the batch."""
    half_height, half_width = height // 2, width // 2
    return {
        1: [(0, 0)],
        2: [(0, 0), (half_height, 0)],
        4: [(0, 0), (0, half_width), (half_height, 0), (half_height, half_width)],
    }[parts]


def part_size(height: int, width: int, parts: int) -> tuple[int, int]:
    return (height // 2 if parts > 1 else height), (width // 2 if parts == 4 else width)


def _round_up(length: int) -> int:
    return length + (-length % SIZE_MULTIPLE)


def _feature_span(start: int, stop: int, origin: int, scale: int, length: int) -> tuple[int, int]:
    """Feature indices i (0 <= i < length) whose image coordinate origin + i * scale lies in [start, stop)."""
    first = max(0, -(-(start - origin) // scale))
    last = min(length, -(-(stop - origin) // scale))
    return first, max(first, last)


class WholeImageStatistics:
    """Records and replays the whole-image means of every channel-attention call while `restore_tensor` tiles an
    image of `height` x `width` pixels in batches of `batch_size` (see the module docstring)."""

    def __init__(self, model: MPRNetModel, height: int, width: int, batch_size: int):
        self.model = model
        self.padded_height, self.padded_width = _round_up(height), _round_up(width)
        self.batch_size = batch_size
        self.recording = False
        self.sums: list[torch.Tensor] = []  # per call: (batch, image parts, channels)
        self.counts: list[list[int]] = []  # per call: feature pixels summed per image part
        self.means: list[torch.Tensor] | None = None
        self._known: list[list[bool]] = []
        self._tile = None
        self._call = 0

    def start_pass(self, record: bool) -> None:
        """Replays what the previous pass recorded (if it did), and records anew if `record`."""
        if self.recording:
            self.means = [
                sums / sums.new_tensor(counts).clamp(min=1)[:, None] for sums, counts in zip(self.sums, self.counts)
            ]
            self._known = [[count > 0 for count in counts] for counts in self.counts]
        self.recording = record
        self.sums, self.counts = [], []

    @contextlib.contextmanager
    def attached(self):
        """Gates the model's channel-attention blocks through `channel_attention` for the calling thread only
        (`MPRNetModel.channel_statistics`): a server restores several requests with the same model at once, and each
        request's statistics must gate its own tiles alone."""
        with self.model.channel_statistics(self):
            yield self

    def start_tile(self, top: int, left: int, height: int, width: int, owned_rows: range, owned_columns: range) -> None:
        self._tile = (top, left, _round_up(height), _round_up(width), owned_rows, owned_columns)
        self._call = 0

    def _image_parts(self, parts: int) -> list[tuple[int, int, int, int]]:
        part_height, part_width = part_size(self.padded_height, self.padded_width, parts)
        return [
            (top, top + part_height, left, left + part_width)
            for top, left in part_origins(self.padded_height, self.padded_width, parts)
        ]

    def channel_attention(self, block: ChannelAttention, features: torch.Tensor) -> torch.Tensor:
        """The block's output on this tile: its features gated by the recorded whole-image means (after a recording
        pass), else by their own; recording the features' sums on the way when this pass records."""
        call, self._call = self._call, self._call + 1
        top, left, tile_height, tile_width, owned_rows, owned_columns = self._tile
        parts = features.shape[0] // self.batch_size
        part_height, part_width = part_size(tile_height, tile_width, parts)
        scale = part_height // features.shape[-2]
        height, width = features.shape[-2:]
        if parts not in (1, 2, 4) or height * scale != part_height or width * scale != part_width:
            raise RuntimeError(
                f"unexpected channel-attention input {tuple(features.shape)} for a {tile_height}x{tile_width} tile"
            )
        origins = [(top + row, left + column) for row, column in part_origins(tile_height, tile_width, parts)]
        chunks = features.split(self.batch_size)
        if self.recording:
            self._record(call, chunks, origins, scale, owned_rows, owned_columns)
        if self.means is None:
            return features * block.gate(block.pooled(features))
        return torch.cat(
            [
                chunk * block.gate(self._pooled(block, call, chunk, origin, scale, parts))
                for chunk, origin in zip(chunks, origins)
            ]
        )

    def _record(self, call, chunks, origins, scale, owned_rows, owned_columns) -> None:
        image_parts = self._image_parts(len(chunks))
        if call == len(self.sums):
            device = chunks[0].device
            # float64 keeps sums over millions of pixels exact to float32 precision; Apple MPS has no float64.
            dtype = torch.float32 if device.type == "mps" else torch.float64
            channels = chunks[0].shape[1]
            self.sums.append(torch.zeros(self.batch_size, len(image_parts), channels, dtype=dtype, device=device))
            self.counts.append([0] * len(image_parts))
        for chunk, (origin_row, origin_column) in zip(chunks, origins):
            for index, (part_top, part_bottom, part_left, part_right) in enumerate(image_parts):
                first_row, last_row = _feature_span(
                    max(owned_rows.start, part_top),
                    min(owned_rows.stop, part_bottom),
                    origin_row,
                    scale,
                    chunk.shape[-2],
                )
                first_column, last_column = _feature_span(
                    max(owned_columns.start, part_left),
                    min(owned_columns.stop, part_right),
                    origin_column,
                    scale,
                    chunk.shape[-1],
                )
                if first_row == last_row or first_column == last_column:
                    continue
                region = chunk[:, :, first_row:last_row, first_column:last_column]
                self.sums[call][:, index] += region.sum(dim=(2, 3), dtype=self.sums[call].dtype)
                self.counts[call][index] += (last_row - first_row) * (last_column - first_column)

    def _pooled(self, block, call, chunk, origin, scale, parts) -> torch.Tensor:
        """The recorded mean of the image part under each feature pixel: (batch, channels, 1, 1) when the chunk lies
        in one image part (the usual case, decided without a device sync), else a per-pixel map."""
        height, width = chunk.shape[-2:]
        row_parts = self._halves_spanned(origin[0], scale, height, self.padded_height) if parts > 1 else [0]
        column_parts = self._halves_spanned(origin[1], scale, width, self.padded_width) if parts == 4 else [0]
        row_factor = 2 if parts == 4 else 1
        used = [row * row_factor + column for row in row_parts for column in column_parts]
        if not all(self._known[call][index] for index in used):
            # An image part made only of padding (an image a few pixels wide): nothing was recorded for it.
            return block.pooled(chunk)
        means = self.means[call].to(chunk.dtype)
        if len(used) == 1:
            return means[:, used[0], :, None, None]
        rows = origin[0] + scale * torch.arange(height, device=chunk.device)
        columns = origin[1] + scale * torch.arange(width, device=chunk.device)
        row_part = (rows >= self.padded_height // 2).long() if parts > 1 else torch.zeros_like(rows)
        column_part = (columns >= self.padded_width // 2).long() if parts == 4 else torch.zeros_like(columns)
        index = row_part[:, None] * row_factor + column_part[None, :]
        return means[:, index].permute(0, 3, 1, 2)

    @staticmethod
    def _halves_spanned(origin: int, scale: int, length: int, padded_length: int) -> list[int]:
        """Which halves of the padded image (0: first, 1: second) hold feature pixels origin + i * scale, i < length."""
        first, last = origin, origin + scale * (length - 1)
        return [half for half, inside in ((0, first < padded_length // 2), (1, last >= padded_length // 2)) if inside]
