"""Tells whether the SMTP server on 127.0.0.1:PORT is the tests' own: aiosmtpd (by its
banner) storing mail in MAILDIR (a probe message is sent and must arrive there) and, given
LOGINS, requiring AUTH and recording each login in that file. Another SMTP sink on the port
would take the tests' mail and make them fail with a misleading message.

    python3 smtp_probe.py PORT MAILDIR [LOGINS]

Exit status: 0 ours; 1 something else answers (what, on stderr); 2 nothing listens.
Standard library only: it runs before any venv exists.
"""
import os
import smtplib
import socket
import sys
import time
import uuid

port, maildir = int(sys.argv[1]), sys.argv[2]
logins = sys.argv[3] if len(sys.argv) > 3 else None


def foreign(what):
    print(what, file=sys.stderr)
    sys.exit(1)


def arrived(probe):
    """The probe message's file in the Maildir, if it is there."""
    new = os.path.join(maildir, "new")
    for name in os.listdir(new) if os.path.isdir(new) else []:
        path = os.path.join(new, name)
        try:
            with open(path, "rb") as f:
                if probe.encode() in f.read():
                    return path
        except OSError:
            pass
    return None


probe = f"forwarder-probe-{uuid.uuid4().hex}"
smtp = smtplib.SMTP(timeout=5)
try:
    code, banner = smtp.connect("127.0.0.1", port)
except (ConnectionRefusedError, socket.timeout, OSError) as e:
    if isinstance(e, ConnectionRefusedError):
        sys.exit(2)
    foreign(f"it does not speak SMTP ({e})")
except smtplib.SMTPException as e:
    foreign(f"it does not speak SMTP ({e})")
banner = banner.decode(errors="replace")
if code != 220 or "Python SMTP" not in banner:
    foreign(f"its banner is {code} {banner!r}, not aiosmtpd's")
try:
    smtp.ehlo()
    if logins:
        if not smtp.has_extn("auth"):
            foreign(f"aiosmtpd ({banner!r}) that does not advertise AUTH")
        smtp.login(probe, "probe")
    message = f"From: probe@localhost\r\nTo: probe@localhost\r\nSubject: {probe}\r\n\r\n{probe}\r\n"
    smtp.sendmail("probe@localhost", ["probe@localhost"], message)
    smtp.quit()
except smtplib.SMTPException as e:
    foreign(f"aiosmtpd ({banner!r}) that refused a probe message: {e}")
for _ in range(40):
    path = arrived(probe)
    if path:
        os.remove(path)
        break
    time.sleep(0.05)
else:
    foreign(f"aiosmtpd ({banner!r}) that does not store mail in {maildir}")
if logins:
    try:
        with open(logins, encoding="utf-8", errors="replace") as f:
            recorded = any(line.startswith(probe + " ") for line in f)
    except OSError:
        recorded = False
    if not recorded:
        foreign(f"aiosmtpd ({banner!r}) that does not record logins in {logins}")
