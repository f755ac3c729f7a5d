"""An SMTP server that requires AUTH (PLAIN or LOGIN, without TLS: loopback only), for the
test that a configured SMTP password is used and shown nowhere else. It accepts any
credentials, appends each login as "<user> <password>" to LOGINS, and stores mail in MAILDIR.

    python smtp_auth_server.py PORT MAILDIR LOGINS
"""
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword

port, maildir, logins = int(sys.argv[1]), sys.argv[2], sys.argv[3]


def authenticator(server, session, envelope, mechanism, auth_data):
    if not isinstance(auth_data, LoginPassword):
        return AuthResult(success=False, handled=False)
    with open(logins, "a", encoding="utf-8") as f:
        f.write(f"{auth_data.login.decode()} {auth_data.password.decode()}\n")
    return AuthResult(success=True)


controller = Controller(
    Mailbox(maildir),
    hostname="127.0.0.1",
    port=port,
    authenticator=authenticator,
    auth_required=True,
    auth_require_tls=False,
)
controller.start()
print(f"SMTP with AUTH on 127.0.0.1:{port}", flush=True)
threading.Event().wait()
