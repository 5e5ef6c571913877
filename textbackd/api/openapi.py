"""The OpenAPI 3.1 document of ``/api/v1`` and of the webhooks textbackd sends (its ``webhooks`` section).

Schema version 1: within it fields are only ever added, never renamed, retyped or removed; a change
that would break a client or a receiver comes as a new API prefix (``/api/v2``) or new event type
names. The field names are the store's and ``replay``'s (``core/model.py``); times are ISO 8601 UTC.
``tests/test_api.py`` checks every response the tests get against this document, and
``tests/test_webhooks_e2e.py`` every webhook body against its ``webhooks`` section.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

from textbackd.core.model import DeliveryState, Direction, EventType, MessageState, Outcome, TextKind

SCHEMA_VERSION = "1.0.0"

_S = {"type": "string"}
_SN = {"type": ["string", "null"]}
_T = {"type": "string", "format": "date-time"}
_TN = {"type": ["string", "null"], "format": "date-time"}
_I = {"type": "integer"}
_B = {"type": "boolean"}
_N = {"type": "number"}


def _obj(props: dict[str, Any], description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "required": list(props), "properties": props}
    if description:
        out["description"] = description
    return out


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _page(item: str) -> dict[str, Any]:
    return _obj({"items": {"type": "array", "items": _ref(item)},
                 "next_cursor": {"type": ["string", "null"], "description": "give it as ?cursor= for the next page; "
                                                                             "null on the last page"}})


CALL = _obj({
    "id": {**_S, "description": '"<pbx>:<pbx call id>"'}, "pbx": _S,
    "direction": {"type": "string", "enum": [d.value for d in Direction]},
    "outcome": {"type": "string", "enum": [o.value for o in Outcome]},
    "missed": _B, "caller": {**_S, "description": "E.164 when it could be read"}, "caller_raw": _S,
    "caller_name": {**_S, "description": "the contact's name when the caller is in the contacts, else the carrier's"},
    "carrier_name": {**_S, "description": "the caller ID name as the PBX gave it"},
    "did": _S, "started": _T, "answered_at": _TN, "ended": _T, "ring_seconds": _N, "voicemail_left": _B,
    "voicemail_box": _SN, "answered_by": _SN, "queue": _SN, "channel": _SN, "recorded_at": _T,
}, "A call as stored (the fields of `textbackd replay` and `textbackd calls --json`).")

MESSAGE = _obj({
    "id": _I, "call_id": _SN, "kind": {"type": "string", "enum": [k.value for k in TextKind]}, "to_number": _S,
    "text": _S, "template": _S, "line_did": _S, "state": {"type": "string", "enum": [s.value for s in MessageState]},
    "reason": _S, "sender_pref": _S, "sender": _S, "segments": _I, "encoding": _S,
    "refs": {"type": "array", "items": _S}, "attempts": _I, "created": _T, "send_at": _T, "updated": _T,
    "sent_at": _TN, "delivered_at": _TN, "expires_at": _TN, "seq": _I,
}, "A text to a caller (or a decision not to text), as stored (`textbackd messages --json`).")

INCOMING = _obj({
    "id": _I, "sender": _S, "from_number": _S, "to_number": _SN, "text": _S, "received_at": _T, "provider_id": _SN,
    "call_id": _SN, "keyword": {"type": "string", "enum": ["", "stop", "start", "help"]},
}, "A text from a phone, as stored.")

OPTOUT = _obj({"number": _S, "active": _B, "changed_at": _T, "source": _S},
              "A number's opt-out changed (STOP, START, or staff).")

CONVERSATION_STATE = _obj({"number": _S, "claimed_by": _SN, "claimed_at": _TN, "handled_by": _SN,
                           "handled_at": _TN}, "Who owns a conversation and when it was marked handled.")

CONVERSATION = {"allOf": [CONVERSATION_STATE, _obj({"needs_person": _B})]}
CONVERSATION_ITEM = {"allOf": [CONVERSATION, _obj({"name": _S, "last_activity_at": _T})]}
TEXT_ITEM = {"oneOf": [
    {"allOf": [MESSAGE, _obj({"direction": {"const": "out"}})]},
    {"allOf": [INCOMING, _obj({"direction": {"const": "in"}})]},
]}
CALL_ITEM = {"allOf": [CALL, _obj({"textback": {"oneOf": [{"type": "null"}, _obj(
    {"id": _I, "state": _S, "reason": _S, "text": _S})], "description": "what was decided for the call"}})]}
DETAIL = {"allOf": [CONVERSATION, _obj({"name": _S, "messages": _page("TextItem")})]}
PROBLEM = _obj({"type": _S, "title": _S, "status": _I, "detail": _S}, "RFC 9457 problem details.")
STATS = {"type": "object", "required": ["total", "by_day", "by_line"],
         "description": "The figures of `textbackd stats --json`."}

EVENT_DATA = {
    EventType.CALL_MISSED: ("Call", "An inbound call nobody answered was stored."),
    EventType.CALL_ANSWERED: ("Call", "An inbound call a person answered was stored."),
    EventType.TEXT_SCHEDULED: ("Message", "A text was queued (a text-back, follow-up, staff text or STOP/HELP answer)."),
    EventType.TEXT_SENT: ("Message", "A sender took the text."),
    EventType.TEXT_DELIVERED: ("Message", "The network reported the text delivered."),
    EventType.TEXT_FAILED: ("Message", "The text failed for good (its reason says why)."),
    EventType.REPLY_RECEIVED: ("Incoming", "A text came from a phone (STOP, START and HELP too: see keyword)."),
    EventType.OPTOUT_CHANGED: ("OptOut", "A number opted out or back in."),
    EventType.CONVERSATION_HANDLED: ("ConversationState", "Staff (or an API client) marked a conversation handled."),
}


def _webhook(etype: str, data: str, summary: str) -> dict[str, Any]:
    header = lambda d: {"in": "header", "required": True, "schema": _S, "description": d}  # noqa: E731
    return {"post": {
        "summary": summary,
        "operationId": f"webhook_{etype.replace('.', '_')}",
        "parameters": [
            {"name": "webhook-id", **header("the event's id: the same on every retry (drop duplicates by it)")},
            {"name": "webhook-timestamp", **header("Unix seconds of this try")},
            {"name": "webhook-signature", **header('v1,<base64 HMAC-SHA256 of "id.timestamp.body"> (Standard Webhooks)')},
        ],
        "requestBody": {"required": True, "content": {"application/json": {"schema": _obj({
            "type": {"const": etype}, "timestamp": {**_T, "description": "when it happened"}, "data": _ref(data),
        })}}},
        "responses": {"2XX": {"description": "received; any other answer is retried (410 disables the endpoint, "
                                             "other 4xx but 408/409/429 drop this event)"}},
    }}


def _get(summary: str, schema: dict[str, Any], params: list[dict[str, Any]] = (), scope: str = "read") -> dict:
    return {"get": {"summary": summary, "security": [{"token": [scope]}], "parameters": list(params),
                    "responses": _responses(200, schema)}}


def _responses(ok: int, schema: dict[str, Any], *extra: int) -> dict[str, Any]:
    problem = {"content": {"application/problem+json": {"schema": _ref("Problem")}}}
    out: dict[str, Any] = {str(ok): {"description": "OK", "content": {"application/json": {"schema": schema}}}}
    for status in (400, 401, 403, *extra):
        out[str(status)] = {"description": "a problem", **problem}
    return out


def _q(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


PAGE_PARAMS = [_q("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}, "items per page"),
               _q("cursor", _S, "next_cursor of the previous page")]
NUMBER = {"name": "number", "in": "path", "required": True, "schema": _S,
          "description": "the caller's number, E.164 (+12125550101); other formats are read with business.default_region"}
TIME = {"type": "string", "description": "ISO 8601 (2026-11-23T09:00:00Z) or a span back from now (7d, 24h, 30m)"}


@lru_cache(maxsize=1)
def _document() -> dict[str, Any]:
    paths = {
        "/calls": _get("Calls, newest first, each with its text-back decision", _page("CallItem"), [
            _q("missed", {"type": "boolean"}, "only missed (true) or answered (false) inbound calls"),
            _q("number", _S, "calls from (or to) this number"), _q("line", _S, "calls to this business number (DID)"),
            _q("outcome", {"type": "string", "enum": [o.value for o in Outcome]}, "only this outcome"),
            _q("since", TIME, "calls that ended at or after"), _q("until", TIME, "calls that ended before"),
            *PAGE_PARAMS]),
        "/conversations": _get("Numbers with a missed call, a text or a reply, latest activity first",
                               _page("ConversationItem"), PAGE_PARAMS),
        "/conversations/{number}": _get("A conversation: who has it, and its texts both ways, newest first",
                                        _ref("ConversationDetail"), [NUMBER, *PAGE_PARAMS]),
        "/conversations/{number}/messages": {"post": {
            "summary": "A staff text through the outbox, with every rule (opt-out, length) applied; audited as "
                       "api:<token name>",
            "security": [{"token": ["write"]}],
            "parameters": [NUMBER, {"name": "Idempotency-Key", "in": "header", "required": False,
                                    "schema": {"type": "string", "maxLength": 255},
                                    "description": "the same key within 24 h answers the first answer again, "
                                                   "without a second text"}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["text"], "additionalProperties": False,
                "properties": {"text": {"type": "string", "description": "at most 4 SMS parts"}}}}}},
            "responses": _responses(201, _ref("Message"), 422),
        }},
        "/conversations/{number}/handled": {"post": {
            "summary": "Mark the conversation handled (it reopens on the next reply or missed call)",
            "security": [{"token": ["write"]}], "parameters": [NUMBER],
            "responses": _responses(200, _ref("Conversation"), 404),
        }},
        "/stats": _get("The owner's figures (as `textbackd stats --json`)", _ref("Stats"), [
            _q("since", TIME, "period start (default 7d)"), _q("until", TIME, "period end (default now)"),
            _q("line", _S, "only calls to this business number")]),
        "/openapi.json": {"get": {"summary": "This document", "security": [],
                                  "responses": {"200": {"description": "OpenAPI 3.1",
                                                        "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    }
    problem = {"description": "a problem", "content": {"application/problem+json": {"schema": _ref("Problem")}}}
    for path, item in paths.items():
        for op in item.values():
            if "{number}" in path:
                op["responses"].setdefault("404", problem)
            if path != "/openapi.json":
                op["responses"].setdefault("500", problem)
    return {
        "openapi": "3.1.0",
        "info": {"title": "textbackd API", "version": SCHEMA_VERSION,
                 "description": "Calls, conversations and figures of one textbackd, and the webhooks it sends. "
                                "Fields are only added within a version."},
        "servers": [{"url": "/api/v1"}],
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer",
                                          "description": "textbackd token add NAME --scope read|write"}},
            "schemas": {"Call": CALL, "CallItem": CALL_ITEM, "Message": MESSAGE, "Incoming": INCOMING,
                        "OptOut": OPTOUT, "ConversationState": CONVERSATION_STATE, "Conversation": CONVERSATION,
                        "ConversationItem": CONVERSATION_ITEM, "ConversationDetail": DETAIL, "TextItem": TEXT_ITEM,
                        "Stats": STATS, "Problem": PROBLEM,
                        "DeliveryState": {"type": "string", "enum": [s.value for s in DeliveryState]}},
        },
        "security": [{"token": ["read"]}],
        "paths": paths,
        "webhooks": {str(t): _webhook(str(t), data, summary) for t, (data, summary) in EVENT_DATA.items()},
    }


def document() -> dict[str, Any]:
    """The document (a fresh copy: callers may change it)."""
    return copy.deepcopy(_document())
