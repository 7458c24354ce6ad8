"""`edge-search serve`: one warm process that answers searches over HTTP (the appliance).

The model is opened once and every query runs in one worker thread that owns the `Library` reader and
the onnxruntime session; request handlers only wait for it. Files are served by catalog id, never by
a path taken from a request.
"""
