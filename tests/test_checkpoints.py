"""SQLite's write-ahead log under a node: commits leave it to the node's checkpoint sweep,
which keeps it from growing while the node writes, and loses nothing."""
from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa

from warnd.config import load_config
from warnd.engine.node import Node
from warnd.store.database import Database
from warnd.store.schema import metadata

PAD = sa.Table("pad", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("text", sa.Text))

ROWS = 4_000  # a batch: about 1,600 pages of WAL, past SQLite's own 1,000-page checkpoint


async def write_batches(db: Database, batches: int, *, checkpoint: bool) -> list[int]:
    """WAL file size after each batch (each batch its own commit)."""
    sizes = []
    for b in range(batches):
        async with db.write() as conn:
            await conn.execute(sa.insert(PAD), [dict(text=f"{b}-{i}" + "x" * 1_000) for i in range(ROWS)])
        sizes.append(os.path.getsize(db.url.split("///", 1)[1] + "-wal"))
        if checkpoint:
            await db.checkpoint()
    return sizes


async def test_commits_leave_the_log_to_checkpoint_which_keeps_it_small(tmp_path: Path):
    db = Database(f"sqlite:///{tmp_path / 'w.db'}", background_checkpoints=True)
    async with db.write() as conn:
        await conn.run_sync(PAD.metadata.create_all)
    grown = await write_batches(db, 3, checkpoint=False)
    assert grown[0] < grown[1] < grown[2]  # no commit checkpointed: the log only grew
    await db.checkpoint()
    kept = await write_batches(db, 3, checkpoint=True)
    assert max(kept) <= grown[2]  # each batch wrote over the log the checkpoint had copied back
    async with db.read() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(PAD))).scalar_one() == 6 * ROWS
    await db.close()
    reopened = Database(f"sqlite:///{tmp_path / 'w.db'}")
    async with reopened.read() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(PAD))).scalar_one() == 6 * ROWS
    await reopened.close()


async def test_without_background_checkpoints_sqlite_checkpoints_in_its_commits(tmp_path: Path):
    db = Database(f"sqlite:///{tmp_path / 'w.db'}")
    async with db.write() as conn:
        await conn.run_sync(PAD.metadata.create_all)
    sizes = await write_batches(db, 3, checkpoint=False)
    assert sizes[2] == sizes[1]  # the log was copied back and written over from its start
    await db.checkpoint()  # asks for nothing: a no-op
    await db.close()


async def test_a_started_node_on_sqlite_runs_the_checkpoint_sweep(tmp_path: Path):
    config = load_config(None, database_url=f"sqlite:///{tmp_path / 'n.db'}", node_id="n1")
    node = Node(config)
    async with node.db.write() as conn:
        await conn.run_sync(metadata.create_all)
    await node.start(dispatch=False)
    try:
        assert node.sweeps.next_run_time("checkpoint") is not None
    finally:
        await node.stop()
