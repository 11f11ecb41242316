"""Settings of the fax-to-email side, derived once from the configuration (and on reload)."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.config import Config
from bridge.inbound_mail import ADMIN_TEMPLATE, InboundMailSettings, template_names
from bridge.mailbuild import MailAddress
from bridge.routing import RoutingTable

__all__ = ["InboundSettings", "required_templates"]


@dataclass(frozen=True, slots=True)
class InboundSettings:
    """Everything the inbound worker needs to know; replaced as a whole on reload."""

    routing: RoutingTable
    mail: InboundMailSettings
    poll_interval: float = 60.0
    all_users: bool = False
    concurrency: int = 4
    mark_read: bool = True
    admin: str | None = None

    @classmethod
    def from_config(cls, config: Config, *, sender: MailAddress) -> InboundSettings:
        """The settings of ``config``; ``sender`` is who our mail comes from."""
        inbound = config.inbound
        return cls(
            routing=RoutingTable.from_config(config),
            mail=InboundMailSettings(
                sender=sender,
                timezone=config.tzinfo,
                message_id_domain=sender.domain,
                filename_template=inbound.filename,
                default_country=config.outbound.default_country,
            ),
            poll_interval=inbound.poll_interval,
            all_users=inbound.all_users,
            concurrency=inbound.concurrency,
            mark_read=inbound.mark_read,
            admin=config.mail.admin,
        )


def required_templates(config: Config) -> tuple[str, ...]:
    """Every template the inbound side may render under ``config`` (check at start/reload)."""
    inbound = config.inbound
    routes = [*inbound.routes.values(), *inbound.sender_routes]
    if inbound.default_route is not None:
        routes.append(inbound.default_route)
    names = [*template_names(None), ADMIN_TEMPLATE]
    for base in sorted({r.template for r in routes if r.template is not None}):
        names += template_names(base)
    return tuple(names)
