#!/usr/bin/env bash
# mailstack.sh: a real Postfix + Dovecot test stack on loopback, for Email
# Scout's end-to-end tests (test/e2e). For test machines only: it rewrites
# /etc/postfix/main.cf and creates local users.
#
#   scripts/mailstack.sh start        install (when missing), configure, start; idempotent
#   scripts/mailstack.sh stop         stop Postfix and Dovecot
#   scripts/mailstack.sh reset        stop, drop the queue, the mailboxes and the logs
#   scripts/mailstack.sh route PORT   route the return domain to 127.0.0.1:PORT
#   scripts/mailstack.sh srs on|off   rewrite forwarded envelope senders with postsrsd (SRS) or not
#   scripts/mailstack.sh delay-warning TIME  Postfix's delay_warning_time (1s: a "delayed" DSN at once; 0h: none)
#   scripts/mailstack.sh status       what runs, where
#   scripts/mailstack.sh forward-line the .forward line taken from docs/reflector.md
#
# What it builds (every listener on 127.0.0.1 only):
#   Postfix  127.0.0.1:25, mydestination = $SCOUT_CUSTOMER_DOMAIN and
#            $SCOUT_IMAP_RETURN_DOMAIN, Maildir delivery, maillog_file, long
#            queue ids (they carry the arrival time to the microsecond), made
#            at MAIL FROM by a long-lived cleanup(8) (smtpd_delay_open_until_
#            valid_rcpt = no, max_use = 10000: docs/capacity.md), short
#            retry times, a transport map that sends $SCOUT_RETURN_DOMAIN to
#            127.0.0.1:$SCOUT_RETURN_PORT (the receiver's SMTP port),
#            STARTTLS with a generated self-signed certificate, SMTP AUTH
#            (after STARTTLS) against Dovecot's users.
#            127.0.0.1:25 accepts any local part of $SCOUT_CUSTOMER_DOMAIN
#            (local_recipient_maps empty for it): an unknown user is bounced
#            by local(8) with a real RFC 3464 DSN ("unknown user") to the
#            envelope sender, the monitor's VERP address.
#   mx2      a second smtpd of the same Postfix on 127.0.0.1:$SCOUT_MX2_PORT,
#            named mx2.$SCOUT_CUSTOMER_DOMAIN: the MX of the domains
#            reject.$SCOUT_CUSTOMER_DOMAIN, whose recipients it refuses with
#            550 5.1.1 (a recipient policy: check_recipient_access), and
#            greylist.$SCOUT_CUSTOMER_DOMAIN, which it answers 451 4.7.1
#            for ever. The first Postfix relays mail for them there, so a
#            probe to them is accepted at submission and then bounced by
#            Postfix with a DSN quoting mx2's reply, or deferred (with a
#            "delayed" DSN after delay_warning_time: `delay-warning 1s`).
#   Dovecot  IMAP 127.0.0.1:$SCOUT_IMAP_PORT, POP3 127.0.0.1:$SCOUT_POP3_PORT,
#            STARTTLS, plain auth, passwd-file users; also XOAUTH2 and
#            OAUTHBEARER (RFC 7628) through Dovecot's oauth2 passdb, which
#            asks the token introspection endpoint (RFC 7662) at
#            http://127.0.0.1:$SCOUT_OAUTH_INTROSPECTION_PORT/introspect
#            (served by the e2e test) whether a token is active and whose
#            it is ("username"). Postfix's SMTP AUTH goes through the same
#            Dovecot auth service, so it offers them too.
#   fwdprobe   an alias that holds just an address: fwdprobe@$SCOUT_CUSTOMER_DOMAIN
#              is forwarded to $SCOUT_FORWARD_TO (the loop's return address),
#              the forward mode of docs/reflector.md with nothing installed;
#              `srs on` makes Postfix rewrite the envelope sender of what it
#              forwards with Debian's postsrsd (127.0.0.1:10001/10002)
#   webscout   the probe mailbox: ~/.forward pipes to /usr/local/bin/scout-reflector
#              with the exact line of docs/reflector.md (so the doc is exercised)
#   imapscout  a Maildir mailbox in Dovecot, for scout-reflector's imap mode
#   scoutreturn  the monitor's return mailbox for the receiver's IMAP mode:
#              scoutreturn@$SCOUT_IMAP_RETURN_DOMAIN is delivered to its
#              Maildir, read over IMAP through Dovecot
#   keys       $SCOUT_STACK_DIR/probe-keys (generated once), installed as the
#              webscout key file; $SCOUT_STACK_DIR/imap-password (imapscout),
#              $SCOUT_STACK_DIR/return-imap-password (scoutreturn); cert.pem
#
# Environment: see docs/configuration.md ("Test mail stack").
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK=${SCOUT_STACK_DIR:-/etc/scout-mailstack}
LOGDIR=${SCOUT_STACK_LOG_DIR:-/var/log/scout-mailstack}
DOMAIN=${SCOUT_CUSTOMER_DOMAIN:-acme.example}
PROBE_USER=webscout # named by the documented .forward line
IMAP_USER=${SCOUT_IMAP_USER:-imapscout}
RETURN_DOMAIN=${SCOUT_RETURN_DOMAIN:-monitor.example}
RETURN_IMAP_USER=${SCOUT_RETURN_IMAP_USER:-scoutreturn}
IMAP_RETURN_DOMAIN=${SCOUT_IMAP_RETURN_DOMAIN:-imap.monitor.example}
IMAP_PORT=${SCOUT_IMAP_PORT:-143}
POP3_PORT=${SCOUT_POP3_PORT:-110}
OAUTH_PORT=${SCOUT_OAUTH_INTROSPECTION_PORT:-8089}
MX2_PORT=${SCOUT_MX2_PORT:-2527}
FORWARD_TO=${SCOUT_FORWARD_TO:-return@monitor.example}
REFLECTOR=/usr/local/bin/scout-reflector
DOVECOT_CONF=$STACK/dovecot.conf
DOVECOT_RUN=/run/scout-dovecot
PACKAGES=(postfix dovecot-imapd dovecot-pop3d openssl postsrsd)

say() { printf 'mailstack: %s\n' "$*"; }
die() { printf 'mailstack: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }
since() { local s=$1 e; e=$(now_ms); printf '%d.%03d s' $(((e - s) / 1000)) $(((e - s) % 1000)); }

[ "$(id -u)" = 0 ] || die "run as root (it configures Postfix and creates users)"

return_port() {
	if [ -n "${SCOUT_RETURN_PORT:-}" ]; then echo "$SCOUT_RETURN_PORT"
	elif [ -f "$STACK/return-port" ]; then cat "$STACK/return-port"
	else echo 2526; fi
}

install_packages() {
	local missing=() p
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	if [ ${#missing[@]} -eq 0 ]; then
		say "packages present: ${PACKAGES[*]}"
		return
	fi
	local t; t=$(now_ms)
	say "installing ${missing[*]} (apt, noninteractive)"
	echo "postfix postfix/main_mailer_type select No configuration" | flock /tmp/scout-apt.lock debconf-set-selections
	flock /tmp/scout-apt.lock apt-get update -qq
	DEBIAN_FRONTEND=noninteractive flock /tmp/scout-apt.lock apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	say "installed in $(since "$t")"
}

# forward_line prints the .forward line of docs/reflector.md: the first line
# of the code block that follows the "mailstack.sh extracts" marker.
forward_line() {
	local line
	line=$(awk '/mailstack.sh extracts/ {m=1; next} m && /^```/ {if (c) exit; c=1; next} c {print; exit}' "$REPO/docs/reflector.md")
	[ -n "$line" ] || die "no .forward line after the marker in docs/reflector.md"
	printf '%s\n' "$line"
}

ensure_user() {
	local u=$1
	if id "$u" >/dev/null 2>&1; then
		say "user $u exists"
	else
		useradd --create-home --shell /usr/sbin/nologin "$u"
		say "created user $u"
	fi
}

install_reflector() {
	local t tmp; t=$(now_ms)
	if [ -n "${SCOUT_REFLECTOR_BIN:-}" ]; then
		install -m 0755 -o root -g root "$SCOUT_REFLECTOR_BIN" "$REFLECTOR"
		say "installed $SCOUT_REFLECTOR_BIN as $REFLECTOR"
		return
	fi
	tmp=$(mktemp)
	(cd "$REPO/cmd" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp" ./scout-reflector)
	install -m 0755 -o root -g root "$tmp" "$REFLECTOR"
	rm -f "$tmp"
	say "built scout-reflector (CGO_ENABLED=0) and installed it as $REFLECTOR in $(since "$t")"
}

setup_files() {
	install -d -m 0755 "$STACK" "$LOGDIR"
	if [ ! -f "$STACK/probe-keys" ]; then
		(umask 077; printf 'acme:acme-e2e-1:%s\n' "$(head -c 32 /dev/urandom | base64 -w0)" >"$STACK/probe-keys")
		say "generated a probe key in $STACK/probe-keys"
	fi
	if [ ! -f "$STACK/imap-password" ]; then
		(umask 077; head -c 18 /dev/urandom | base64 -w0 | tr '/+' '_-' >"$STACK/imap-password")
		say "generated the $IMAP_USER password in $STACK/imap-password"
	fi
	if [ ! -f "$STACK/return-imap-password" ]; then
		(umask 077; head -c 18 /dev/urandom | base64 -w0 | tr '/+' '_-' >"$STACK/return-imap-password")
		say "generated the $RETURN_IMAP_USER password in $STACK/return-imap-password"
	fi
	if [ ! -f "$STACK/cert.pem" ]; then
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
			-subj "/CN=localhost" -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
			-keyout "$STACK/key.pem" -out "$STACK/cert.pem" 2>/dev/null
		chmod 0600 "$STACK/key.pem"
		say "generated a self-signed certificate for 127.0.0.1 in $STACK/cert.pem"
	fi

	ensure_user "$PROBE_USER"
	ensure_user "$IMAP_USER"
	ensure_user "$RETURN_IMAP_USER"
	local home line keyfile
	home=$(getent passwd "$PROBE_USER" | cut -d: -f6)
	line=$(forward_line)
	keyfile=$(printf '%s\n' "$line" | sed -n 's/.*--key-file=\([^ "]*\).*/\1/p')
	[ -n "$keyfile" ] || die "the documented .forward line names no --key-file"
	install -d -m 0700 -o "$PROBE_USER" -g "$PROBE_USER" "$(dirname "$keyfile")"
	install -m 0600 -o "$PROBE_USER" -g "$PROBE_USER" "$STACK/probe-keys" "$keyfile"
	printf '%s\n' "$line" >"$home/.forward"
	chown "$PROBE_USER:$PROBE_USER" "$home/.forward"
	chmod 0644 "$home/.forward"
	say "$home/.forward: $line"
	local u
	for u in "$IMAP_USER" "$RETURN_IMAP_USER"; do
		install -d -m 0700 -o "$u" -g "$u" "$(getent passwd "$u" | cut -d: -f6)/Maildir"
	done
}

configure_postfix() {
	local port; port=$(return_port)
	# Installed with "No configuration": Postfix ships no main.cf then.
	[ -f /etc/postfix/main.cf ] || touch /etc/postfix/main.cf
	[ -f /etc/postfix/master.cf ] || cp /usr/share/postfix/master.cf.dist /etc/postfix/master.cf
	postconf -e \
		"compatibility_level = 3.6" \
		"inet_interfaces = loopback-only" \
		"inet_protocols = ipv4" \
		"myhostname = mx.$DOMAIN" \
		"mydomain = $DOMAIN" \
		"myorigin = $DOMAIN" \
		"mydestination = $DOMAIN, $IMAP_RETURN_DOMAIN, localhost" \
		"mynetworks = 127.0.0.0/8" \
		"relayhost =" \
		"transport_maps = hash:/etc/postfix/scout_transport" \
		"smtp_dns_support_level = disabled" \
		"alias_maps = hash:/etc/aliases" \
		"alias_database = hash:/etc/aliases" \
		"home_mailbox = Maildir/" \
		"mailbox_command =" \
		"biff = no" \
		"maillog_file = $LOGDIR/postfix.log" \
		"enable_long_queue_ids = yes" \
		"smtpd_delay_open_until_valid_rcpt = no" \
		"max_use = 10000" \
		"minimal_backoff_time = 2s" \
		"maximal_backoff_time = 10s" \
		"queue_run_delay = 2s" \
		"delay_warning_time = 0h" \
		"smtpd_tls_cert_file = $STACK/cert.pem" \
		"smtpd_tls_key_file = $STACK/key.pem" \
		"smtpd_tls_security_level = may" \
		"smtpd_tls_auth_only = yes" \
		"smtpd_sasl_auth_enable = yes" \
		"smtpd_sasl_type = dovecot" \
		"smtpd_sasl_path = private/auth" \
		"smtp_tls_security_level = may"
	# No chroot: nothing to copy into the spool, and nothing here needs it.
	postconf -F '*/*/chroot = n'
	postconf -X sender_canonical_maps sender_canonical_classes recipient_canonical_maps recipient_canonical_classes
	configure_mx2
	write_transport "$port"
	echo "$port" >"$STACK/return-port"
	echo "mx.$DOMAIN" >/etc/mailname
	[ -f /etc/aliases ] || echo "postmaster: root" >/etc/aliases
	sed -i '/^fwdprobe:/d' /etc/aliases
	echo "fwdprobe: $FORWARD_TO" >>/etc/aliases
	newaliases
	say "Postfix: 127.0.0.1:25 for $DOMAIN and $IMAP_RETURN_DOMAIN; $RETURN_DOMAIN -> 127.0.0.1:$port; reject.$DOMAIN and greylist.$DOMAIN -> mx2 127.0.0.1:$MX2_PORT; log $LOGDIR/postfix.log"
}

# write_transport routes the return domain to 127.0.0.1:$1 (the receiver)
# and the refusing domains to mx2.
write_transport() {
	{
		printf '%s smtp:[127.0.0.1]:%s\n' "$RETURN_DOMAIN" "$1"
		printf '%s smtp:[127.0.0.1]:%s\n' "reject.$DOMAIN" "$MX2_PORT" "greylist.$DOMAIN" "$MX2_PORT"
	} >/etc/postfix/scout_transport
	postmap /etc/postfix/scout_transport
}

# configure_mx2 adds mx2, a second smtpd that refuses every recipient of
# the reject and greylist domains (postconf -M and -P write master.cf), and
# lets 127.0.0.1:25 accept unknown local users (local(8) bounces them).
configure_mx2() {
	local svc="127.0.0.1:$MX2_PORT/inet"
	printf '%s\n' "reject.$DOMAIN 550 5.1.1 mailbox no longer exists" \
		"greylist.$DOMAIN 451 4.7.1 Greylisted, please try again later" >/etc/postfix/scout_mx2_access
	postmap /etc/postfix/scout_mx2_access
	# A master.cf -o value cannot hold spaces: the list is a main.cf
	# parameter of its own, named there (Postfix's master(5)).
	postconf -e "scout_mx2_recipient_restrictions = check_recipient_access hash:/etc/postfix/scout_mx2_access, reject"
	postconf -M "$svc=127.0.0.1:$MX2_PORT inet n - n - - smtpd"
	postconf -P "smtp/inet/local_recipient_maps="
	postconf -P "$svc/syslog_name=postfix-mx2" "$svc/myhostname=mx2.$DOMAIN" \
		"$svc/smtpd_relay_restrictions=" \
		"$svc/smtpd_recipient_restrictions=\$scout_mx2_recipient_restrictions"
}

start_postfix() {
	local t; t=$(now_ms)
	if postfix status >/dev/null 2>&1; then
		postfix reload </dev/null >/dev/null 2>&1
		say "Postfix reloaded"
	else
		postfix start </dev/null >/dev/null 2>&1
		say "Postfix started in $(since "$t")"
	fi
	wait_port 25 || die "Postfix does not listen on 127.0.0.1:25 (see $LOGDIR/postfix.log)"
}

# dovecot_user prints the passwd-file line of user $1 with the password in file $2.
dovecot_user() {
	local uid gid home
	read -r uid gid home < <(getent passwd "$1" | awk -F: '{print $3, $4, $6}')
	printf '%s:{PLAIN}%s:%s:%s::%s\n' "$1" "$(cat "$2")" "$uid" "$gid" "$home"
}

configure_dovecot() {
	local dh=""
	(umask 027
	 dovecot_user "$IMAP_USER" "$STACK/imap-password" >"$STACK/dovecot-users"
	 dovecot_user "$RETURN_IMAP_USER" "$STACK/return-imap-password" >>"$STACK/dovecot-users")
	chgrp dovecot "$STACK/dovecot-users"
	[ -f /usr/share/dovecot/dh.pem ] && dh="ssl_dh = </usr/share/dovecot/dh.pem"
	cat >"$DOVECOT_CONF" <<EOF
# Generated by scripts/mailstack.sh: Email Scout's loopback test server.
protocols = imap pop3
listen = 127.0.0.1
base_dir = $DOVECOT_RUN
log_path = $LOGDIR/dovecot.log
ssl = yes
ssl_cert = <$STACK/cert.pem
ssl_key = <$STACK/key.pem
$dh
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2 oauthbearer
mail_location = maildir:~/Maildir
passdb {
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%u $STACK/dovecot-users
}
# Bearer tokens (XOAUTH2, OAUTHBEARER): checked by the introspection
# endpoint, which the e2e test serves on loopback.
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = $STACK/dovecot-oauth2.conf.ext
}
userdb {
  driver = passwd-file
  args = username_format=%u $STACK/dovecot-users
}
# SMTP AUTH for Postfix with the same users (smtpd_sasl_type = dovecot).
service auth {
  unix_listener /var/spool/postfix/private/auth {
    mode = 0660
    user = postfix
    group = postfix
  }
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_PORT
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $POP3_PORT
  }
  inet_listener pop3s {
    port = 0
  }
}
EOF
	# Dovecot's oauth2 passdb (doc/wiki/PasswordDatabase.oauth2.txt):
	# introspection by POST token=<token> (RFC 7662); the answer's
	# "username" is the login, "active": true is required.
	cat >"$STACK/dovecot-oauth2.conf.ext" <<EOF
# Generated by scripts/mailstack.sh.
introspection_url = http://127.0.0.1:$OAUTH_PORT/introspect
introspection_mode = post
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
timeout_msecs = 5000
EOF
	say "Dovecot: IMAP 127.0.0.1:$IMAP_PORT, POP3 127.0.0.1:$POP3_PORT (STARTTLS), users $IMAP_USER, $RETURN_IMAP_USER; XOAUTH2/OAUTHBEARER via http://127.0.0.1:$OAUTH_PORT/introspect; log $LOGDIR/dovecot.log"
}

dovecot_running() { [ -f "$DOVECOT_RUN/master.pid" ] && kill -0 "$(cat "$DOVECOT_RUN/master.pid")" 2>/dev/null; }

start_dovecot() {
	local t; t=$(now_ms)
	if dovecot_running; then
		doveadm -c "$DOVECOT_CONF" reload
		say "Dovecot reloaded"
	else
		dovecot -c "$DOVECOT_CONF" </dev/null >/dev/null 2>&1
	fi
	wait_port "$IMAP_PORT" || die "Dovecot does not listen on 127.0.0.1:$IMAP_PORT (see $LOGDIR/dovecot.log)"
	wait_port "$POP3_PORT" || die "Dovecot does not listen on 127.0.0.1:$POP3_PORT"
	say "Dovecot ready in $(since "$t")"
}

wait_port() {
	local i
	for i in $(seq 1 200); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.05
	done
	return 1
}

# srs_on starts postsrsd (SRS, the Sender Rewriting Scheme) for the
# customer domain and makes Postfix rewrite envelope senders of other
# domains through it, and SRS recipients back (its README's tcp tables).
srs_on() {
	command -v postsrsd >/dev/null || die "postsrsd is not installed"
	[ -f "$STACK/srs-secret" ] || (umask 077; head -c 24 /dev/urandom | base64 -w0 >"$STACK/srs-secret")
	# Ours, not one the package's init script may have started with
	# another domain.
	pkill -x postsrsd 2>/dev/null && sleep 0.2
	postsrsd -D -d "$DOMAIN" -s "$STACK/srs-secret" -l 127.0.0.1 -f 10001 -r 10002 -u nobody -p /run/scout-postsrsd.pid
	wait_port 10001 || die "postsrsd does not listen on 127.0.0.1:10001"
	postconf -e "sender_canonical_maps = tcp:127.0.0.1:10001" "sender_canonical_classes = envelope_sender" \
		"recipient_canonical_maps = tcp:127.0.0.1:10002" "recipient_canonical_classes = envelope_recipient,header_recipient"
	postfix reload >/dev/null 2>&1
	say "SRS on: envelope senders outside $DOMAIN are rewritten by postsrsd"
}

srs_off() {
	postconf -X sender_canonical_maps sender_canonical_classes recipient_canonical_maps recipient_canonical_classes
	if postfix status >/dev/null 2>&1; then postfix reload >/dev/null 2>&1; fi
	say "SRS off"
}

stop_all() {
	if postfix status >/dev/null 2>&1; then postfix stop >/dev/null 2>&1; say "Postfix stopped"; fi
	if dovecot_running; then doveadm -c "$DOVECOT_CONF" stop; say "Dovecot stopped"; fi
}

case ${1:-} in
start)
	install_packages
	setup_files
	install_reflector
	configure_postfix
	configure_dovecot
	start_postfix
	start_dovecot
	say "ready"
	;;
stop)
	stop_all
	;;
reset)
	stop_all
	postsuper -d ALL >/dev/null 2>&1 || true
	for u in "$PROBE_USER" "$IMAP_USER" "$RETURN_IMAP_USER"; do
		h=$(getent passwd "$u" | cut -d: -f6) || continue
		rm -rf "$h/Maildir" "$h/.scout-reflector/state" "$h/.scout-reflector/log"
		find "$h/.scout-reflector" -maxdepth 1 -type f -regextype posix-extended -regex '.*/[a-z0-9_-]{1,64}' ! -name keys -delete 2>/dev/null || true
	done
	rm -f "$LOGDIR"/*.log
	say "queue, mailboxes, answered-probe records and logs removed"
	;;
route)
	[ -n "${2:-}" ] || die "usage: $0 route PORT"
	SCOUT_RETURN_PORT=$2
	write_transport "$2"
	echo "$2" >"$STACK/return-port"
	if postfix status >/dev/null 2>&1; then postfix reload >/dev/null 2>&1; fi
	say "$RETURN_DOMAIN -> 127.0.0.1:$2"
	;;
delay-warning)
	[ -n "${2:-}" ] || die "usage: $0 delay-warning TIME (1s, or 0h for none)"
	postconf -e "delay_warning_time = $2"
	if postfix status >/dev/null 2>&1; then postfix reload >/dev/null 2>&1; fi
	say "delay_warning_time = $2"
	;;
srs)
	case ${2:-} in
	on) srs_on ;;
	off) srs_off ;;
	*) die "usage: $0 srs on|off" ;;
	esac
	;;
status)
	if postfix status >/dev/null 2>&1; then say "Postfix running (127.0.0.1:25)"; else say "Postfix not running"; fi
	if dovecot_running; then say "Dovecot running (pid $(cat "$DOVECOT_RUN/master.pid"))"; else say "Dovecot not running"; fi
	say "return route: $(cat /etc/postfix/scout_transport 2>/dev/null || echo none)"
	;;
forward-line)
	forward_line
	;;
*)
	sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
	;;
esac
