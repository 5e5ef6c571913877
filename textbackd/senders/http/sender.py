"""A gateway we have no code for (``kind = "http"``): Android SMS gateway apps,
national providers, an in-house relay.

The request is described in the config: ``method`` and ``url``, ``headers``,
``body`` (field → template; ``{to}``, ``{text}`` and ``{from}`` are replaced,
and in headers and body ``{password}`` by the sender's ``password`` secret, so an
API key can live in ``password_file`` or a systemd credential; every other brace
is left as it is), ``body_format`` ``"form"`` or ``"json"``
(for ``GET`` the fields go in the query string), ``success_status`` and
``message_id_path``, a dotted path into the JSON answer (``"messages.0.id"``).
When there is no message id the result carries a generated one.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import structlog

from textbackd.core.model import SendResult
from textbackd.core.numbers import mask
from textbackd.core.sms import analyze
from textbackd.senders.base import SendTrack
from textbackd.senders.gateway import HttpGateway

log = structlog.get_logger(__name__)

_PLACEHOLDER = re.compile(r"\{(to|text|from|password)\}")


def render(template: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def json_path(doc: Any, path: str) -> Any:
    """``doc`` followed along ``a.b.0.c``; None when a step is missing."""
    cur = doc
    for step in path.split("."):
        if isinstance(cur, dict) and step in cur:
            cur = cur[step]
        elif isinstance(cur, list) and step.lstrip("-").isdigit() and -len(cur) <= int(step) < len(cur):
            cur = cur[int(step)]
        else:
            return None
    return cur


class HttpSender(HttpGateway):
    label = "HTTP gateway"

    def values(self, to: str, text: str) -> dict[str, str]:
        sc = self.sender_config
        return {"to": to, "text": text, "from": sc.from_, "password": sc.password.reveal()}

    def request_args(self, to: str, text: str) -> dict[str, Any]:
        sc = self.sender_config
        values = self.values(to, text)
        headers = {k: render(v, values) for k, v in sc.headers}
        fields = [(k, render(v, values)) for k, v in sc.body]
        if sc.method == "GET":
            return {"params": fields, "headers": headers}
        if sc.body_format == "json":
            headers.setdefault("Content-Type", "application/json")
            return {"data": json.dumps(dict(fields), ensure_ascii=False).encode("utf-8"), "headers": headers}
        from urllib.parse import urlencode

        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        return {"data": urlencode(fields).encode("ascii"), "headers": headers}

    async def send(self, to: str, text: str, track: SendTrack | None = None) -> SendResult:
        sc = self.sender_config
        info = analyze(text)
        resp = await self.request(sc.method, sc.url, before_write=self.handover(track), **self.request_args(to, text))
        if resp.status not in sc.success_status:
            code = None
            doc = resp.json()
            if isinstance(doc, dict):
                for k in ("code", "error_code", "errorCode"):
                    if isinstance(doc.get(k), str | int) and not isinstance(doc.get(k), bool):
                        code = str(doc[k])
                        break
            self.fail(resp, code=code)
        ref = None
        if sc.message_id_path:
            found = json_path(resp.json(), sc.message_id_path)
            if isinstance(found, str | int) and not isinstance(found, bool) and str(found):
                ref = str(found)
            else:
                log.warning("gateway_no_message_id", sender=self.name, path=sc.message_id_path, status=resp.status)
        if ref is None:
            ref = f"textbackd-{uuid.uuid4().hex}"
        log.info(
            "sms_sent", sender=self.name, kind="http", to=mask(to, self.config.logging.log_numbers),
            segments=info.segments, encoding=info.encoding, ref=ref,
        )
        return SendResult(sender=self.name, segments=info.segments, references=(ref,), encoding=info.encoding)

