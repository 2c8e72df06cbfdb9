"""Outgoing mail of the portal: py4web's Mailer over SMTP, sendmail, or .eml files.

:class:`PortalMailer` is a py4web :class:`~py4web.utils.mailer.Mailer` (so Auth can use
it as its sender for password-reset mails) with two more transports:

* ``sendmail`` — the spec's fallback when no SMTP server is configured: the message is
  piped to ``sendmail -t -i``;
* ``files`` — the embedded default: each message is written as an ``.eml`` file in the
  mail folder and its subject (never its body: it may hold a password) is logged.
"""

from __future__ import annotations

import email.charset
import email.encoders
import email.header
import email.utils
import logging
import os
import subprocess
import time
import uuid
from email.message import EmailMessage
from pathlib import Path

from py4web.utils import mailer as _py4web_mailer
from py4web.utils.mailer import Mailer

log = logging.getLogger("waddlebot.portal.mail")

# py4web 1.20260805's mailer module uses these names without importing them, so its SMTP
# path fails with a NameError; provide them (idempotent, only when missing).
for _name, _value in (
    ("add_charset", email.charset.add_charset),
    ("charset_QP", email.charset.QP),
    ("Header", email.header.Header),
    ("Encoders", email.encoders),
):
    if not hasattr(_py4web_mailer, _name):
        setattr(_py4web_mailer, _name, _value)


class MailError(RuntimeError):
    """A message could not be handed to the configured transport."""


class PortalMailer(Mailer):
    """py4web's Mailer with the transport chosen by the portal settings."""

    def __init__(
        self,
        *,
        transport: str,
        sender: str,
        smtp_host: str | None = None,
        smtp_port: int = 587,
        smtp_username: str | None = None,
        smtp_password: str = "",
        smtp_tls: bool = True,
        mail_dir: Path | None = None,
        sendmail_path: str = "/usr/sbin/sendmail",
        timeout: float = 10.0,
    ):
        login = f"{smtp_username}:{smtp_password}" if smtp_username else None
        server = f"{smtp_host}:{smtp_port}" if smtp_host else None
        super().__init__(server=server, sender=sender, login=login, tls=smtp_tls)
        self.settings.timeout = timeout
        self.settings.logger = log
        self.transport = transport
        self.mail_dir = Path(mail_dir) if mail_dir else None
        self.sendmail_path = sendmail_path

    def send(self, to, subject="[no subject]", body="[no body]", **kwargs) -> bool:
        """Send one message; raise MailError when the transport refuses it."""
        recipients = [to] if isinstance(to, str) else list(to)
        if self.transport == "smtp":
            try:
                return super().send(recipients, subject=subject, body=body, **kwargs)
            except Exception as exc:  # noqa: BLE001 - smtplib and socket errors alike
                raise MailError(f"SMTP server refused the message: {exc}") from None
        message = self._message(recipients, subject, body)
        if self.transport == "files":
            path = self._write_file(message)
            log.info("mail to %s written to %s: %s", ", ".join(recipients), path, subject)
            return True
        self._sendmail(message)
        log.info("mail to %s handed to sendmail: %s", ", ".join(recipients), subject)
        return True

    def _message(self, recipients: list[str], subject: str, body) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.settings.sender
        message["To"] = ", ".join(recipients)
        message["Subject"] = subject
        message["Date"] = email.utils.formatdate(localtime=False)
        message["Message-ID"] = email.utils.make_msgid()
        text = body[0] if isinstance(body, (list, tuple)) else body
        # 8bit keeps links and passwords readable in an .eml file (no quoted-printable)
        message.set_content(str(text), cte="8bit")
        return message

    def _write_file(self, message: EmailMessage) -> Path:
        if self.mail_dir is None:
            raise MailError("no mail folder is configured")
        try:
            self.mail_dir.mkdir(parents=True, exist_ok=True)
            name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}.eml"
            path = self.mail_dir / name
            # the message may hold a temporary password: readable by the owner only
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(message.as_bytes())
        except OSError as exc:
            raise MailError(f"cannot write the mail to {self.mail_dir}: {exc.strerror}") from None
        return path

    def _sendmail(self, message: EmailMessage) -> None:
        try:
            done = subprocess.run(
                [self.sendmail_path, "-t", "-i"],
                input=message.as_bytes(),
                capture_output=True,
                timeout=self.settings.timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise MailError(f"cannot run {self.sendmail_path}: {exc}") from None
        if done.returncode != 0:
            reason = done.stderr.decode(errors="replace").strip()[:200]
            raise MailError(f"sendmail exited {done.returncode}: {reason}")


class AuthMailer(PortalMailer):
    """The same transports for py4web Auth's own mails, which must never raise."""

    def send(self, to, subject="[no subject]", body="[no body]", **kwargs) -> bool:
        """Send like PortalMailer; a failure is logged and reported as False."""
        try:
            return super().send(to, subject=subject, body=body, **kwargs)
        except MailError as exc:
            log.warning("could not send %r: %s", subject, exc)
            return False
