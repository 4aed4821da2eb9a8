"""Video files through FFmpeg's libraries (PyAV): probing by decoding, frames in order and upright, and
decoding read ahead of the consumer."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import av
import numpy as np
from av.sidedata.sidedata import Type as SideDataType

VARIABLE_RATE_SPREAD = 0.5
"""Frame durations that differ by more than this fraction of the average one make a variable frame rate
(timestamp rounding in a constant-rate file differs by a tick, far less)."""


QUARTER_TURN_DEG = 90
FULL_TURN_DEG = 4 * QUARTER_TURN_DEG

DISPLAY_MATRIX_ONE = 1 << 16
"""The display matrix's rotation and scale entries are 16.16 fixed-point numbers (FFmpeg's libavutil/display.h)."""


class MediaError(RuntimeError):
    """A media file that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Orientation:
    """How a player turns the stored picture to show it: first `rotation` degrees counter-clockwise, then
    mirrored left to right if `mirrored` (the stream's display matrix, which phones write instead of turning
    the pixels)."""

    rotation: int = 0  # 0, 90, 180 or 270
    mirrored: bool = False

    def display_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the shown picture, from those of the stored one."""
        return (height, width) if self.rotation % (2 * QUARTER_TURN_DEG) else (width, height)

    def upright(self, image: np.ndarray) -> np.ndarray:
        """The stored image (H, W, ...) as shown."""
        if self == UNTURNED:
            return image
        shown = np.rot90(image, self.rotation // QUARTER_TURN_DEG)  # np.rot90 turns counter-clockwise
        return np.ascontiguousarray(shown[:, ::-1] if self.mirrored else shown)


UNTURNED = Orientation()


def display_orientation(frame: av.VideoFrame, path: Path) -> Orientation:
    """The orientation the frame's display matrix asks for; a turn that is not a multiple of 90 degrees is an
    error (no phone writes one, and showing it would resample the picture into a tilted, cropped one)."""
    side_data = frame.side_data.get(SideDataType.DISPLAYMATRIX)
    if side_data is None:
        return UNTURNED
    matrix = np.frombuffer(bytes(side_data), dtype=np.int32).reshape(3, 3)[:2, :2] / DISPLAY_MATRIX_ONE
    # FFmpeg's matrix maps a stored point (x, y) to (x, y) @ matrix: a counter-clockwise turn by t is
    # [[cos t, -sin t], [sin t, cos t]], and a mirror after it negates the first column (libavutil/display.c;
    # FFmpeg's command line, which turns pictures by this matrix, shows all eight orientations the same way).
    mirrored = bool(np.linalg.det(matrix) < 0)
    first_column = -matrix[:, 0] if mirrored else matrix[:, 0]
    degrees = round(np.degrees(np.arctan2(first_column[1], first_column[0])))
    if degrees % QUARTER_TURN_DEG:
        raise MediaError(f"{path}: display matrix turns the picture by {degrees} degrees; only multiples of "
                         f"{QUARTER_TURN_DEG} are supported")
    return Orientation(degrees % FULL_TURN_DEG, mirrored)


@dataclass(frozen=True)
class VideoInfo:
    path: str
    n_frames: int  # counted by decoding: container frame counts are unreliable
    fps: float
    width: int  # as shown and as iter_frames yields frames: the stored height for a video stored sideways
    height: int
    rotation: int  # degrees counter-clockwise the stored picture is turned to be shown (Orientation)
    mirrored: bool
    duration_s: float
    container_frames: int
    variable_frame_rate: bool  # frame k is still taken at (k - 1) / fps: audio alignment is approximate
    has_audio: bool
    audio_sample_rate: int | None
    audio_channels: int | None

    def to_dict(self) -> dict:
        return asdict(self)


def open_container(path: Path) -> av.container.InputContainer:
    if not Path(path).is_file():
        raise MediaError(f"{path}: no such file")
    if Path(path).stat().st_size == 0:
        raise MediaError(f"{path}: file is empty (0 bytes)")
    try:
        return av.open(str(path))
    except av.error.FFmpegError as err:
        raise MediaError(f"{path}: not a readable media file ({err})") from err


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise MediaError(f"{path}: has no video stream")
    return container.streams.video[0]


def _decode_video(container: av.container.InputContainer, stream, path: Path) -> Iterator[av.VideoFrame]:
    try:
        yield from container.decode(stream)
    except av.error.FFmpegError as err:
        raise MediaError(f"{path}: video stream is corrupt ({err})") from err


def probe_video(path: Path) -> VideoInfo:
    """Decode every frame once to count them, and describe the streams."""
    with open_container(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        if not rate or float(rate) <= 0:
            raise MediaError(f"{path}: video stream has no frame rate")
        times, orientations = [], set()
        for frame in _decode_video(container, stream, path):
            times.append(frame.time)
            orientations.add(display_orientation(frame, path))
        n_frames = len(times)
        if n_frames == 0:
            raise MediaError(f"{path}: no decodable video frames")
        if len(orientations) > 1:
            shown = ", ".join(map(str, orientations))
            raise MediaError(f"{path}: display orientation changes within the video ({shown})")
        [orientation] = orientations
        width, height = orientation.display_size(stream.codec_context.width, stream.codec_context.height)
        audio = container.streams.audio[0] if container.streams.audio else None
        return VideoInfo(
            path=str(path),
            n_frames=n_frames,
            fps=float(rate),
            width=width,
            height=height,
            rotation=orientation.rotation,
            mirrored=orientation.mirrored,
            duration_s=n_frames / float(rate),
            container_frames=int(stream.frames or 0),
            variable_frame_rate=is_variable_rate(times, float(rate)),
            has_audio=audio is not None,
            audio_sample_rate=audio.codec_context.sample_rate if audio else None,
            audio_channels=audio.codec_context.channels if audio else None,
        )


def is_variable_rate(times: list[float | None], fps: float) -> bool:
    """Whether the frames' presentation times (seconds, decoding order) step unevenly at the given rate."""
    known = sorted(t for t in times if t is not None)
    if len(known) < 3:
        return False
    steps = np.diff(known)
    return bool(steps.max() - steps.min() > VARIABLE_RATE_SPREAD / fps)


def iter_frames(path: Path, frames: Iterable[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (1-based frame number, RGB uint8 image) in decoding order, only the requested frames if given;
    each image upright, as a player shows it (its display matrix applied)."""
    wanted = None if frames is None else set(frames)
    last = max(wanted) if wanted else None
    with open_container(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        for number, frame in enumerate(_decode_video(container, stream, path), start=1):
            if wanted is None or number in wanted:
                yield number, display_orientation(frame, path).upright(frame.to_ndarray(format="rgb24"))
            if last is not None and number >= last:
                return


Item = TypeVar("Item")


def read_ahead(items: Iterable[Item], depth: int) -> Iterator[Item]:
    """`items` in order, produced by a background thread up to `depth` ahead of the consumer, so that decoding
    the next frames overlaps the network's work on the current ones (the decoder and onnxruntime or CUDA all
    release the GIL). An exception in the producer is raised here; stopping early closes `items`."""
    if depth <= 0:
        yield from items
        return
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                buffer.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        source = iter(items)
        try:
            for item in source:
                if not put((None, item)):
                    return
            put((None, end))
        except BaseException as err:  # the consumer raises it, in its own thread
            put((err, None))
        finally:
            getattr(source, "close", lambda: None)()

    producer = threading.Thread(target=produce, name="read_ahead", daemon=True)
    producer.start()
    try:
        while True:
            err, item = buffer.get()
            if err is not None:
                raise err
            if item is end:
                return
            yield item
    finally:
        stop.set()
        producer.join()


def numbered_batches(items: Iterable[tuple[int, Item]], batch_size: int) -> Iterator[tuple[list[int], list[Item]]]:
    """(frame numbers, items) of `batch_size` consecutive (frame number, item) pairs at a time; the last
    batch may be shorter."""
    numbers: list[int] = []
    batch: list[Item] = []
    for number, item in items:
        numbers.append(number)
        batch.append(item)
        if len(batch) == batch_size:
            yield numbers, batch
            numbers, batch = [], []
    if batch:
        yield numbers, batch
