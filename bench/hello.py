"""The ceiling: a hello-world Flask route, served by the same server settings."""

from flask import Flask

app = Flask(__name__)
print("ready: hello", flush=True)


@app.post("/webhooks/message")
def hello():
    return {"status": "hello"}
