"""The handler stack: what every event handler of the page is wrapped in.

- `guard`: errors a user can fix (RecipeError, ComposerError, ModelError, ValueError)
  become gr.Error with the engine's message and no traceback in the log; anything
  else is logged and masked, so the server keeps serving.
- `cancellable`: the blocking work runs in a worker thread with a `cancel` flag that
  Stop, a client's cancel, or a client that went away (a killed script, a closed page) sets; the engine stops before its next
  network evaluation. Each run takes one of its visitor's run slots.
- `streamed_run(status)`: the one decorator of every run the page streams.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import threading

import anyio
import gradio as gr
from gradio.context import LocalContext

from composer.facade import Cancelled, ComposerError
from composer.models import ModelError
from composer.recipe import RecipeError
from ui.state import plain
from ui.visitors import TooManyRuns, Visitors
from ui.words import error_markdown

log = logging.getLogger("ui")
USER_ERRORS = (RecipeError, ComposerError, ModelError)
GENERIC_ERROR = ("Something unexpected went wrong on the server; it was logged. "
                 "The app is still running: adjust the recipe and try again.")
VISITORS = Visitors()

try:  # ZeroGPU: must be imported before CUDA is touched; a no-op elsewhere.
    import spaces
    gpu = spaces.GPU(duration=120)
except ImportError:  # the package is optional
    def gpu(fn):
        return fn


def user_error(err: Exception) -> gr.Error:
    # A visitor's mistake, not a server fault: no traceback in the server log.
    return gr.Error(str(err), duration=12, title="Cannot run this recipe", print_exception=False)


@contextlib.contextmanager
def _translated_errors(name: str):
    """Engine errors become gr.Error; anything unexpected is logged and masked."""
    try:
        yield
    except (gr.Error, Cancelled):
        raise
    except USER_ERRORS as err:
        raise user_error(err) from None
    except ValueError as err:  # e.g. diffusers refusing a setting: say what it said
        log.warning("value error in %s: %s", name, err)
        raise user_error(err) from None
    except Exception:
        log.exception("unexpected error in %s", name)
        raise gr.Error(GENERIC_ERROR, duration=None, print_exception=False) from None  # logged above


def guard(fn):
    """Wrap a handler (plain or streaming) in `_translated_errors`."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args, **kwargs):
            with _translated_errors(fn.__name__):
                yield from fn(*args, **kwargs)
        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        with _translated_errors(fn.__name__):
            return fn(*args, **kwargs)
    return call


def soft(fn, failed):
    """For form handlers: an error leaves the page as it was and goes to a toast and
    to `failed(message)`'s updates (a plain handler's error never reaches the page)."""
    @functools.wraps(fn)
    def call(*args):
        try:
            return fn(*args)
        except Exception as err:
            message = plain(str(err))
            if not isinstance(err, ValueError):  # Recipe/Composer/ModelError are
                log.exception("unexpected error in %s", fn.__name__)
                message = GENERIC_ERROR
            gr.Warning(message.splitlines()[0])
            return failed(message)
    return call


_END = object()


GONE_POLL_S = 0.25   # how often a run asks whether its client is still there


def _queued_event():
    """Gradio's queue entry of the running event, or None (a direct call, no queue)."""
    blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
    queue = getattr(blocks, "_queue", None)
    return queue.event_ids_to_events.get(event_id) if queue is not None and event_id else None


async def _cancel_when_gone(cancel: threading.Event) -> None:
    """Set `cancel` once the client that asked for the run has gone. Gradio marks a
    queued event dead when its client's stream closes (a killed script, a closed or
    reloaded tab: Queue.clean_events) but lets a running handler compute to its end."""
    event = _queued_event()
    if event is None:
        return
    while event.alive and not cancel.is_set():
        await anyio.sleep(GONE_POLL_S)
    if not event.alive and not cancel.is_set():
        log.info("session %s: its event stream closed; stopping its run", event.session_hash)
    cancel.set()


@contextlib.contextmanager
def _watched(cancel: threading.Event):
    """The run's client watched while the body runs; the flag set when it ends. A
    task of its own, not a task group: a stream's body yields, and may be closed
    from another task."""
    watcher = asyncio.ensure_future(_cancel_when_gone(cancel))
    try:
        yield
    finally:
        cancel.set()
        watcher.cancel()


def cancellable(fn):
    """Run a blocking handler (plain or streaming) in a worker thread, passing it a
    `cancel` flag. When the client goes (a killed script, a closed page), Gradio
    cancels the event, or the page's Stop sets it (STOPPABLE), the engine stops before
    its next network evaluation instead of computing to the end of the step or the run."""
    signature = inspect.signature(fn)
    shown = signature.replace(parameters=[p for p in signature.parameters.values()
                                          if p.name != "cancel"])  # not an API input
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        async def stream(*args):
            cancel = threading.Event()
            with visitor_slot(), STOPPABLE.running(cancel):
                items = fn(*args, cancel=cancel)
                try:
                    with _watched(cancel):
                        while (item := await anyio.to_thread.run_sync(
                                next, items, _END, abandon_on_cancel=True)) is not _END:
                            yield item
                except Cancelled:       # Stop or a gone client set the flag: end quietly
                    return
                finally:
                    cancel.set()
                    with contextlib.suppress(ValueError):  # still running: it stops at the flag
                        items.close()
        stream.__signature__ = shown
        return stream

    @functools.wraps(fn)
    async def call(*args):
        cancel = threading.Event()
        with visitor_slot():
            with _watched(cancel):
                return await anyio.to_thread.run_sync(functools.partial(fn, *args, cancel=cancel),
                                                      abandon_on_cancel=True)
    call.__signature__ = shown
    return call


def api_call(fn):
    """The stack of an API endpoint that returns once: cancellable, on the GPU where
    there is one, errors translated."""
    return cancellable(gpu(guard(fn)))


def streamed_run(status):
    """The stack of every run the page streams: cancellable by Stop, on the GPU where
    there is one, errors translated, and a failure also said on the `status` line,
    which said "Running…" (the toast goes; the line stays)."""
    def said_on_status(fn):
        @functools.wraps(fn)
        def stream(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Cancelled:
                raise
            except Exception as err:
                message = plain(str(err)) if isinstance(err, ValueError) else GENERIC_ERROR
                yield {status: error_markdown(message)}
                raise
        return stream

    return lambda fn: api_call(said_on_status(fn))


class Stoppable:
    """The cancel flags of each session's running streams, so the page's Stop ends them
    through the engine's own flag. Cancelling the Gradio event instead (`cancels=`)
    left a red "Error" badge on the status line in 3 of 4 Stops.

    A session streams one run at a time: a new stream supersedes the session's older
    ones (their flags are set), so an older run can never finish last and overwrite
    the newer one's result (the page's landing run did, after an example was opened)."""

    def __init__(self):
        self._flags: dict[str, set[threading.Event]] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def running(self, cancel: threading.Event):
        session = getattr(LocalContext.request.get(None), "session_hash", None)
        with self._lock:
            if session is not None:
                for older in self._flags.get(session, ()):
                    if not older.is_set():
                        log.info("session %s: a newer run supersedes its running one", session)
                    older.set()
            self._flags.setdefault(session, set()).add(cancel)
        try:
            yield
        finally:
            with self._lock:
                flags = self._flags.get(session, set())
                flags.discard(cancel)
                if not flags:
                    self._flags.pop(session, None)

    def stop(self, session: str | None) -> int:
        """Set the flags of a session's running streams; returns how many."""
        with self._lock:
            flags = list(self._flags.get(session, ())) if session is not None else []
        for flag in flags:
            flag.set()
        return len(flags)


STOPPABLE = Stoppable()


@contextlib.contextmanager
def visitor_slot():
    """One of the calling visitor's run slots (ui/visitors.py), or a clear refusal."""
    try:
        with VISITORS.slot(LocalContext.request.get(None)):
            yield
    except TooManyRuns as err:
        raise user_error(err) from None
