"""The sandbox's HTML page at ``/``: faxes sent, faxes received, and a form to receive one.

No JavaScript. Every value is escaped by jinja2's autoescape: fax numbers, CSIDs,
caller ids, references and file names all come from untrusted clients.
"""

from __future__ import annotations

import asyncio

from jinja2 import Environment, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from bridge.sandbox.formats import timestamp
from bridge.sandbox.mailview import caught_mail
from bridge.sandbox.web import context

_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>InterFAX sandbox</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 2em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; }
.ok { color: #070; } .failed { color: #a00; } .progress { color: #a60; }
form { border: 1px solid #ccc; padding: 1em; max-width: 32em; }
label { display: block; margin: .4em 0; }
</style>
</head>
<body>
<h1>InterFAX sandbox</h1>
<p>API base URL: <code>{{ base }}</code>. The control API lives under
<code>/_sandbox/</code>. For loopback use only: this page and the control API need no
password.</p>

<h2>Faxes sent ({{ outbound|length }})</h2>
{% if outbound %}
<table>
<tr><th>Id</th><th>To</th><th>Status</th><th>Submitted (UTC)</th><th>Reference</th>
<th>Contact</th><th>Documents</th></tr>
{% for fax in outbound %}
<tr>
<td>{{ fax.id }}{% if fax.hidden %} (hidden){% endif %}</td>
<td>{{ fax.number }}</td>
<td class="{{ fax.css }}">{{ fax.status }} {{ fax.label }}</td>
<td>{{ fax.submitted }}</td>
<td>{{ fax.reference or "" }}</td>
<td>{{ fax.contact or "" }}</td>
<td>{% for doc in fax.documents %}
{% if doc.url %}<a href="{{ doc.url }}">{{ doc.label }}</a>{% else %}{{ doc.label }}{% endif %}
{% if not loop.last %}<br>{% endif %}{% endfor %}</td>
</tr>
{% endfor %}
</table>
{% else %}<p>None yet.</p>{% endif %}

<h2>Faxes received ({{ inbound|length }})</h2>
{% if inbound %}
<table>
<tr><th>Id</th><th>On number</th><th>Caller id</th><th>Remote CSID</th><th>Pages</th>
<th>Received (UTC)</th><th>Image</th><th>State</th></tr>
{% for fax in inbound %}
<tr>
<td>{{ fax.message_id }}</td><td>{{ fax.phone_number }}</td><td>{{ fax.caller_id or "" }}</td>
<td>{{ fax.remote_csid }}</td><td>{{ fax.pages }}</td><td>{{ fax.received }}</td>
<td><a href="/_sandbox/inbound/{{ fax.message_id }}/image">{{ fax.label }}</a></td>
<td>{{ fax.image_status }}</td>
</tr>
{% endfor %}
</table>
{% else %}<p>None yet.</p>{% endif %}

{% if mailbox_on %}
<h2>Mail the bridge sent ({{ mail|length }})</h2>
{% if mail %}
<table>
<tr><th>Date</th><th>From</th><th>To</th><th>Subject</th><th>Attachments</th><th></th></tr>
{% for item in mail %}
<tr><td>{{ item.date }}</td><td>{{ item.sender }}</td><td>{{ item.to }}</td>
<td>{{ item.subject }}</td><td>{{ item.attachments|join(", ") }}</td>
<td><a href="/_sandbox/mail/{{ item.name|urlencode }}">open (.eml)</a></td></tr>
{% endfor %}
</table>
{% else %}<p>None yet.</p>{% endif %}
{% endif %}

<h2>Receive a fax</h2>
<form method="post" action="/_sandbox/inbound" enctype="multipart/form-data">
<input type="hidden" name="next" value="/">
<label>PDF or TIFF <input type="file" name="file" accept=".pdf,.tif,.tiff" required></label>
<label>On number (phoneNumber) <input name="phoneNumber" value="+12125550100" required></label>
<label>Caller id (callerId) <input name="callerId" value="+12125550199"></label>
<label>Remote CSID (remoteCSID) <input name="remoteCSID" value="Sandbox sender"></label>
<button type="submit">Receive</button>
</form>
</body>
</html>
"""

_environment = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_page = _environment.from_string(_TEMPLATE)


_LABELS = {
    -1: "preparing",
    -2: "queued",
    -3: "sending",
    0: "sent",
    403: "cancelled",
    3931: "busy",
    8021: "no answer",
    204000: "rendering failed",
}


def _label(status: int) -> str:
    if status in _LABELS:
        return _LABELS[status]
    return "in progress" if status < 0 else "failed"


def _css(status: int) -> str:
    if status < 0:
        return "progress"
    return "ok" if status == 0 else "failed"


async def index(request: Request) -> Response:
    """Render the page from the current state."""
    state = context(request).state
    outbound = []
    for _, fax in sorted(state.faxes.items(), reverse=True):
        status = state.progress(fax).status
        outbound.append(
            {
                "id": fax.id,
                "hidden": fax.hidden,
                "number": fax.fax_number,
                "status": status,
                "css": _css(status),
                "label": _label(status),
                "submitted": timestamp(fax.submit_time),
                "reference": fax.options.reference,
                "contact": fax.options.contact,
                "documents": [
                    {
                        "label": doc.filename or doc.location or f"document {index + 1}",
                        "url": None
                        if doc.kind == "external"
                        else f"/_sandbox/outbound/{fax.id}/documents/{index}",
                    }
                    for index, doc in enumerate(fax.documents)
                ],
            }
        )
    inbound = [
        {
            "message_id": fax.message_id,
            "phone_number": fax.phone_number,
            "caller_id": fax.caller_id,
            "remote_csid": fax.remote_csid,
            "pages": fax.pages,
            "received": timestamp(fax.receive_time),
            "label": fax.filename or fax.content_type,
            "image_status": fax.image_status,
        }
        for _, fax in sorted(state.inbound.items(), reverse=True)
    ]
    base = str(request.base_url).rstrip("/")
    mailbox = context(request).mailbox
    html = _page.render(
        base=base,
        outbound=outbound,
        inbound=inbound,
        mailbox_on=mailbox is not None,
        # Reading and parsing the files is off the loop: in the demo it is the bridge's too.
        mail=await asyncio.to_thread(caught_mail, mailbox),
    )
    return HTMLResponse(
        html, headers={"Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'"}
    )


def routes() -> list[Route]:
    """The page route."""
    return [Route("/", index, methods=["GET"])]
