#!/usr/bin/python3
"""The baseline of scripts/bench-serve.sh: the same weights served by PyTorch (Debian's
python3-torch) behind Python's threaded HTTP server, one request = one forward pass of its rows
(no batching across requests), answering the same Open Inference Protocol body as kiln-serve.

usage: serve_pytorch.py CHECKPOINT mlp|cnn PORT_FILE
Loads the model's parameters from the kiln checkpoint (a TorchScript archive), binds
127.0.0.1:0, writes the port to PORT_FILE, and serves /v2/models/<any>/infer until killed."""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch
from torch import nn

torch.set_num_threads(1)


def build(kind):
    if kind == "mlp":
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                             nn.Linear(128, 10))
    # kiln's CNN, layer for layer (it pools before the ReLU; the result is the same).
    return nn.Sequential(nn.Unflatten(1, (1, 28, 28)),
                         nn.Conv2d(1, 32, 5, padding=2), nn.MaxPool2d(2), nn.ReLU(),
                         nn.Conv2d(32, 64, 5, padding=2), nn.MaxPool2d(2), nn.ReLU(),
                         nn.Flatten(), nn.Linear(64 * 7 * 7, 1024), nn.ReLU(), nn.Linear(1024, 10))


def main():
    checkpoint, kind, port_file = sys.argv[1], sys.argv[2], sys.argv[3]
    archive = torch.jit.load(checkpoint)
    model = build(kind)
    state = {name[len("model."):]: p for name, p in archive.named_parameters()
             if name.startswith("model.")}
    model.load_state_dict(state)
    model.eval()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body leave in separate writes: without this each reply waits for the
        # client's delayed ACK (40 ms). A fair baseline turns Nagle off, as kiln-serve does.
        disable_nagle_algorithm = True

        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            tensor = body["inputs"][0]
            x = torch.tensor(tensor["data"], dtype=torch.float32).reshape(tensor["shape"])
            with torch.no_grad():
                p, label = torch.softmax(model(x), 1).max(1)
            reply = json.dumps({"model_name": kind, "outputs": [
                {"name": "label", "datatype": "INT64", "shape": [len(label)],
                 "data": label.tolist()},
                {"name": "probability", "datatype": "FP64", "shape": [len(p)],
                 "data": p.tolist()}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os
    os.rename(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
