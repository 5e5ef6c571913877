#!/usr/bin/python3
"""An idle Asterisk Manager Interface for the package test: a PBX with no calls.

    fake_asterisk.py PORT SECRET_FILE LOG

It sends the banner and answers Login (user textbackd, the secret in SECRET_FILE, read
at each login), Events, Ping and CoreShowChannels (no channels) as Asterisk does, then
stays quiet. Each login is appended to LOG as "accepted" or "refused", so the test sees
that the daemon logged in with the secret the package generated. Only the standard
library: it runs with the container's /usr/bin/python3.
"""

import socketserver
import sys

port, secret_file, log_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]


class Session(socketserver.StreamRequestHandler):
    def send(self, text):
        self.wfile.write(text.replace("\n", "\r\n").encode())

    def handle(self):
        self.send("Asterisk Call Manager/11.0.0\n")
        buf = b""
        while True:
            chunk = self.rfile.readline()
            if not chunk:
                return
            buf += chunk
            if not buf.endswith(b"\r\n\r\n"):
                continue
            fields = {}
            for line in buf.decode("utf-8", "replace").split("\r\n"):
                k, sep, v = line.partition(":")
                if sep:
                    fields[k.strip().lower()] = v.strip()
            buf = b""
            action, aid = fields.get("action", "").lower(), fields.get("actionid", "")
            head = f"ActionID: {aid}\n" if aid else ""
            if action == "login":
                ok = fields.get("username") == "textbackd" and fields.get("secret") == open(secret_file).read().strip()
                with open(log_path, "a") as f:
                    f.write("accepted\n" if ok else "refused\n")
                if not ok:
                    self.send(f"Response: Error\n{head}Message: Authentication failed\n\n")
                    return
                self.send(f"Response: Success\n{head}Message: Authentication accepted\n\n")
                self.send("Event: FullyBooted\nPrivilege: system,all\nUptime: 100\nLastReload: 100\nStatus: Fully Booted\n\n")
            elif action == "ping":
                self.send(f"Response: Success\n{head}Ping: Pong\nTimestamp: 0.000000\n\n")
            elif action == "coreshowchannels":
                self.send(f"Response: Success\n{head}EventList: start\nMessage: Channels will follow\n\n")
                self.send(f"Event: CoreShowChannelsComplete\n{head}EventList: Complete\nListItems: 0\n\n")
            elif action == "logoff":
                self.send(f"Response: Goodbye\n{head}Message: Thanks for all the fish.\n\n")
                return
            else:
                self.send(f"Response: Success\n{head}\n")


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


Server(("127.0.0.1", port), Session).serve_forever()
