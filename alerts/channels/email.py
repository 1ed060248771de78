"""Email: a multipart/alternative message (plain text and HTML) through SMTP, over
STARTTLS, TLS from the first byte, or plain to a relay on this machine, with an optional
login whose user name and password come from the environment."""

from __future__ import annotations

import html
import logging
import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

from alerts.channel import DeliveryResult
from alerts.config import EmailChannel as EmailConfig
from alerts.notification import Notification

log = logging.getLogger(__name__)


def recipients(notification: Notification, config: EmailConfig) -> list[str]:
    """`to`, and with `to_owner` the owner's address when the notification has an owner
    with one (once, should `to` hold it already)."""
    owner = notification.owner
    extra = owner.email if config.to_owner and owner is not None else None
    return [*config.to, *([extra] if extra and extra not in config.to else [])]


def compose(notification: Notification, config: EmailConfig) -> EmailMessage:
    """The message: subject the headline, the same facts and link in both parts."""
    n = notification
    mail = EmailMessage()
    mail["Subject"] = n.headline()
    mail["From"] = config.sender
    mail["To"] = ", ".join(recipients(n, config))
    mail["Date"] = formatdate(usegmt=True)
    # The notification's id, so a retried delivery is recognisably the same message.
    domain = parseaddr(config.sender)[1].rpartition("@")[2]
    mail["Message-ID"] = f"<{n.id}@{domain}>"
    mail["X-Q2C-Event"] = n.event
    facts = [(key, str(value)) for key, value in n.details.items()]
    if n.correlation_id:
        facts.append(("correlation ID", n.correlation_id))
    if n.owner is not None:
        facts.insert(0, ("assigned to", n.owner.name))
    plain = [n.headline(), "", n.text, ""]
    plain += [f"{key}: {value}" for key, value in facts]
    plain += ["", f"Open in Q2C Console: {n.link}"]
    mail.set_content("\n".join(plain) + "\n")
    rows = "".join(
        f"<tr><th align='left'>{html.escape(key)}</th><td>{html.escape(value)}</td></tr>"
        for key, value in facts
    )
    text = html.escape(n.text).replace("\n", "<br>")
    mail.add_alternative(
        f"<html><body><h2>{html.escape(n.headline())}</h2><p>{text}</p>"
        f"<table>{rows}</table>"
        f"<p><a href='{html.escape(n.link, quote=True)}'>Open in Q2C Console</a></p>"
        "</body></html>",
        subtype="html",
    )
    return mail


class EmailChannel:
    """Channel over SMTP (see alerts.channel.Channel for the contract). A 4xx reply may
    succeed later, a 5xx will not; a server that does not offer STARTTLS when it is asked
    for is a failure, never a quiet fall-back to plain text."""

    def __init__(self, name: str, config: EmailConfig, environ: Mapping[str, str]) -> None:
        self.name, self._config = name, config
        self._login = (
            (environ.get(config.username_env, ""), environ.get(config.password_env, ""))
            if config.username_env and config.password_env
            else None
        )

    def send(self, notification: Notification) -> DeliveryResult:
        config = self._config
        if self._login is not None and not all(self._login):
            missing = config.username_env if not self._login[0] else config.password_env
            return DeliveryResult.failure(f"${missing} is not set")
        unaddressed = self._unaddressed(notification)
        if unaddressed:
            log.warning("%s: %s", self.name, unaddressed)
        if not recipients(notification, config):
            return DeliveryResult.failure(f"nobody to send to: {unaddressed}")
        mail = compose(notification, config)
        try:
            refused = self._deliver(mail)
        except smtplib.SMTPNotSupportedError as exc:
            return DeliveryResult.failure(str(exc))
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            return DeliveryResult.failure(
                f"every recipient was refused: {_replies(exc.recipients)}",
                retryable=all(400 <= code < 500 for code in codes),
            )
        except smtplib.SMTPAuthenticationError as exc:
            return DeliveryResult.failure(
                f"{config.smtp} refused the login: {exc.smtp_code} {_text(exc.smtp_error)}"
            )
        except smtplib.SMTPResponseException as exc:
            return DeliveryResult.failure(
                f"{config.smtp} answered {exc.smtp_code} {_text(exc.smtp_error)}",
                retryable=400 <= exc.smtp_code < 500,
            )
        except smtplib.SMTPServerDisconnected:
            return DeliveryResult.failure(f"{config.smtp} closed the connection", retryable=True)
        except ssl.SSLCertVerificationError as exc:
            return DeliveryResult.failure(f"TLS certificate not trusted: {exc.verify_message}")
        except ssl.SSLError as exc:
            return DeliveryResult.failure(f"TLS handshake failed: {exc.reason or exc}")
        except TimeoutError:
            seconds = config.timeout.total_seconds()
            return DeliveryResult.failure(
                f"{config.smtp} did not answer within {seconds:g} s", retryable=True
            )
        except ConnectionRefusedError:
            return DeliveryResult.failure(f"{config.smtp} refused the connection", retryable=True)
        except OSError as exc:
            return DeliveryResult.failure(f"{config.smtp}: {exc.strerror or exc}", retryable=True)
        accepted = len(recipients(notification, config)) - len(refused)
        reason = f"{config.smtp} accepted the message for {accepted} recipient(s)"
        if refused:
            reason += f"; refused {_replies(refused)}"
        if unaddressed:
            reason += f"; {unaddressed}"
        return DeliveryResult.success(reason)

    def _unaddressed(self, notification: Notification) -> str:
        """Why a `to_owner` channel cannot write to the notification's owner, if it cannot:
        the owner has no address (their mail goes to `to` alone), or it names none."""
        if not self._config.to_owner:
            return ""
        owner = notification.owner
        if owner is None:
            return "the message concerns no owner" if not self._config.to else ""
        return "" if owner.email else f"owner {owner.username} has no e-mail address"

    def _deliver(self, mail: EmailMessage) -> dict[str, tuple[int, bytes]]:
        """Send `mail`; the recipients refused (when some were accepted)."""
        config = self._config
        timeout = config.timeout.total_seconds()
        context = ssl.create_default_context(cafile=config.ca_file)
        security = config.effective_security
        smtp = (
            smtplib.SMTP_SSL(config.host, config.port, timeout=timeout, context=context)
            if security == "tls"
            else smtplib.SMTP(config.host, config.port, timeout=timeout)
        )
        with smtp:
            if security == "starttls":
                smtp.ehlo()
                if not smtp.has_extn("starttls"):
                    raise smtplib.SMTPNotSupportedError(
                        f"{config.smtp} does not offer STARTTLS (set security: tls or none)"
                    )
                smtp.starttls(context=context)
            if self._login is not None:
                smtp.login(*self._login)
            return smtp.send_message(mail)

    def close(self) -> None:
        """Nothing held: each delivery opens its own connection."""


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


def _replies(recipients: Mapping[str, tuple[int, bytes]]) -> str:
    return "; ".join(
        f"{address} ({code} {_text(reply)})" for address, (code, reply) in recipients.items()
    )
