"""Typed keys for what the application object carries."""
from __future__ import annotations

from aiohttp import web

from warnd.engine.node import Node

NODE = web.AppKey("node", Node)
METRICS = web.AppKey("metrics", object)
