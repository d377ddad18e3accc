"""The HTTP routes, one `APIRouter` per concern (FastAPI's "bigger applications" layout).

`api/app.py` includes them; what they share (auth, the store handle, the stream hub) lives
beside this package in `api/`.
"""
