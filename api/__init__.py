"""The FastAPI app that streams step events over Server-Sent Events, and its dashboard.

`app.create_app(settings)` builds the app and `server.serve(settings)` runs it (`vitalflow
api`). Inside: `feed` reads the steps topic (Kafka, or the demo's SQLite log), `hub` is the one
live reader per process fanning records out to bounded per-stream queues, `stream` turns one
client's resume position into frames (history, replay buffer, live), `position` is the resume
position carried in every SSE `id:`, `auth` and `selection` decide what a token may see,
`stats` and `metrics` count, and `events`, `observability` and `dashboard` are the routers.
`client` is a small asyncio SSE reader (`tests/bench/bench_sse.py` measures latency and memory).
"""
