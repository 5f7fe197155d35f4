"""``oblivio apikey | user | webhook``: access management. ``COMMANDS`` is registered by the entry point.

Each command calls one service; a refused input prints the reason and exits with status 1. The
acting principal in the audit chain is ``cli:<operating-system user>``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from core.bootstrap import setup_django
from core.principals import HUMAN_ROLES, Role, cli_principal

from .cli_pipeline import COMMANDS as pipeline_commands


def _service_errors(command: Callable[..., None]) -> Callable[..., None]:
    """Set Django up, and turn service refusals into a message and exit status 1."""
    @wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        setup_django()
        from .errors import ComplianceError

        try:
            command(*args, **kwargs)
        except ComplianceError as exc:
            raise click.ClickException(f"{exc.message} [{exc.code}]") from None
    return run


@click.group()
def apikey() -> None:
    """API keys of hospital systems (scoped to institutions)."""


@apikey.command("create")
@click.option("--institution", "institutions", multiple=True, required=True,
              help="Institution code the key may act for (repeatable).")
@click.option("--name", required=True, help="What the key is for, e.g. 'EHR integration'.")
@_service_errors
def apikey_create_command(institutions: tuple[str, ...], name: str) -> None:
    """Create a key and print it once (only its SHA-256 is stored)."""
    from .accounts import apikey_create

    key, token = apikey_create(name=name, institution_codes=list(institutions), actor=cli_principal())
    click.echo(f"created API key {key.prefix} ({key.name}) for {', '.join(institutions)}", err=True)
    click.echo("store it now; it cannot be shown again:", err=True)
    click.echo(token)


@apikey.command("revoke")
@click.argument("prefix")
@_service_errors
def apikey_revoke_command(prefix: str) -> None:
    """Revoke the key with this prefix at once."""
    from .accounts import apikey_revoke

    apikey_revoke(prefix=prefix, actor=cli_principal())
    click.echo(f"revoked API key {prefix}")


@apikey.command("list")
@_service_errors
def apikey_list_command() -> None:
    """Keys with their institutions, last use and revocation."""
    from .models import ApiKey

    for key in ApiKey.objects.prefetch_related("institutions"):
        codes = ",".join(institution.code for institution in key.institutions.all())
        state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
        used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
        click.echo(f"{key.prefix}  {state:<18} last used {used:<16} {codes:<20} {key.name}")


@click.group()
def user() -> None:
    """People and their roles."""


@user.command("create")
@click.option("--username", required=True)
@click.option("--email", default="", help="Optional e-mail address.")
@click.option("--role", "roles", multiple=True, required=True,
              type=click.Choice(sorted(role.value for role in HUMAN_ROLES)),
              help="Role to grant (repeatable).")
@click.password_option(envvar="OBLIVIO_USER_PASSWORD",
                       help="Password (prompted when omitted; or OBLIVIO_USER_PASSWORD).")
@_service_errors
def user_create_command(username: str, email: str, roles: tuple[str, ...], password: str) -> None:
    """Create a person who signs in to the dashboard and the API (session)."""
    from .accounts import user_create

    user_create(username=username, email=email, password=password, roles=[Role(role) for role in roles],
                actor=cli_principal())
    click.echo(f"created user {username} with roles {', '.join(roles)}")


_ROLE = click.option("--role", required=True, type=click.Choice(sorted(role.value for role in HUMAN_ROLES)))


@user.command("grant")
@click.argument("username")
@_ROLE
@_service_errors
def user_grant_command(username: str, role: str) -> None:
    """Give a person a role (audited)."""
    from .accounts import role_grant

    changed = role_grant(username=username, role=Role(role), actor=cli_principal())
    click.echo(f"granted {role} to {username}" if changed else f"{username} already holds {role}")


@user.command("revoke")
@click.argument("username")
@_ROLE
@_service_errors
def user_revoke_command(username: str, role: str) -> None:
    """Take a role away from a person at once (audited)."""
    from .accounts import role_revoke

    changed = role_revoke(username=username, role=Role(role), actor=cli_principal())
    click.echo(f"revoked {role} from {username}" if changed else f"{username} does not hold {role}")


@click.group()
def webhook() -> None:
    """Webhook endpoints that receive signed status notifications."""


@webhook.command("create")
@click.option("--institution", required=True, help="Institution code.")
@click.option("--url", required=True, help="HTTPS endpoint of the receiver.")
@click.option("--event", "events", multiple=True,
              help="Event type to send, e.g. forget_request.status_changed (repeatable; default: all).")
@_service_errors
def webhook_create_command(institution: str, url: str, events: tuple[str, ...]) -> None:
    """Register an endpoint and print its signing secret."""
    from .webhooks import webhook_endpoint_create, webhook_secret

    endpoint = webhook_endpoint_create(institution_code=institution, url=url, events=list(events),
                                       actor=cli_principal())
    click.echo(f"created webhook endpoint {endpoint.pk} for {institution}; signing secret:", err=True)
    click.echo(webhook_secret(endpoint))


@webhook.command("rotate-secret")
@click.argument("endpoint_id", type=int)
@_service_errors
def webhook_rotate_secret_command(endpoint_id: int) -> None:
    """Give an endpoint a new signing secret and print it (the old one stops working at once)."""
    from .webhooks import webhook_endpoint_rotate_secret

    new_secret = webhook_endpoint_rotate_secret(endpoint_id=endpoint_id, actor=cli_principal())
    click.echo(f"new signing secret of webhook endpoint {endpoint_id}:", err=True)
    click.echo(new_secret)


@webhook.command("disable")
@click.argument("endpoint_id", type=int)
@_service_errors
def webhook_disable_command(endpoint_id: int) -> None:
    """Stop sending to an endpoint."""
    from .webhooks import webhook_endpoint_disable

    webhook_endpoint_disable(endpoint_id=endpoint_id, actor=cli_principal())
    click.echo(f"disabled webhook endpoint {endpoint_id}")


COMMANDS: list[click.Command] = [apikey, user, webhook, *pipeline_commands]
