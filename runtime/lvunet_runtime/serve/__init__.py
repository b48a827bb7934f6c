"""``lvunet-serve``: a local web page and HTTP API (optional extra ``lvunet-runtime[serve]``).

Nothing here is imported by the rest of the runtime; FastAPI and uvicorn are imported only when the
server starts.
"""
