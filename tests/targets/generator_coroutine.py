"""Workers park inside running frames: a generator delegating with yield from, a coroutine
awaiting another (driven by send()), and an async generator iterated by a task on an asyncio
event loop.  A suspended generator is kept alive and must not show.  Main is in serve()."""
import asyncio

import fhtarget as fh


def gen_inner(spot):
    fh.park(spot)
    yield 1


def gen_outer(spot):
    yield from gen_inner(spot)


def drive_generator(spot):
    for _ in gen_outer(spot):
        pass


async def coro_inner(spot):
    fh.park(spot)


async def coro_outer(spot):
    await coro_inner(spot)


def drive_coroutine(spot):
    coro_outer(spot).send(None)


async def agen(spot):
    await asyncio.sleep(0)
    fh.park(spot)
    yield 1


async def task_main(spot):
    async for _ in agen(spot):
        pass


def drive_loop(spot):
    asyncio.new_event_loop().run_until_complete(task_main(spot))


def suspended_gen():
    yield 1
    yield 2


fh.register()
idle = suspended_gen()
next(idle)
fh.start(drive_generator)
fh.start(drive_coroutine)
fh.start(drive_loop)
fh.serve()
