#!/bin/bash
# The package test, run inside a clean Debian 12 root (scripts/deb-test makes it and
# boots it with systemd-nspawn; MODE=chroot when it cannot boot, see below).
#
#   A  fresh install: apt install ./textbackd_NEW.deb, nothing started; edit one file;
#      systemctl start: it logs in to an idle fake Asterisk with the generated secret and
#      a text goes out; the unit's verify and security; remove; purge.
#   B  upgrade with texts waiting: the OLD package (the application of an older commit,
#      store schema 2) runs with 8 texts due (a slow gateway takes 0.5 s each) and 4
#      scheduled for tomorrow; apt install ./NEW.deb stops it with SIGTERM mid-queue,
#      backs the store up, migrates it on start; each text is sent exactly once and the
#      4 wait on. Then the downgrade refuses the newer store with its clear error, the
#      README's roll-back (restore the backup) brings the old version back, and purge.
#
# Each check prints "ok" or "FAIL" with one sentence of what it proves; the last line
# is "N passed, M failed". MODE=chroot (no systemd as PID 1): the package's scripts then
# start nothing themselves, and this script runs the unit's ExecStartPre/ExecStart as the
# unit's user with the installed files, and stops it with SIGTERM like systemctl would.
set -u
cd "$(dirname "$0")"
here=$(pwd)
# shellcheck disable=SC1091
. ./env            # NEW_DEB, OLD_DEB, OLD_SCHEMA, NEW_SCHEMA, MODE
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
T0=$(date +%s)
pass=0 fail=0
conf=/etc/textbackd/textbackd.toml
db=/var/lib/textbackd/textbackd.db
gwlog=$here/sent.jsonl
apt_opts=(-y -q -o Dpkg::Options::=--force-confold -o APT::Install-Recommends=false)

step() { echo; echo "== $* ($(( $(date +%s) - T0 )) s)"; }
check() {
    local what=$1 t=$SECONDS; shift
    if "$@" >>"$here/checks.log" 2>&1; then
        echo "ok    $what$([ $((SECONDS - t)) -ge 2 ] && echo " ($((SECONDS - t)) s)")"; pass=$((pass + 1))
    else
        echo "FAIL  $what"; echo "      (command: $*)"; fail=$((fail + 1))
    fi
}
not() { ! "$@"; }
exposure() { systemd-analyze security "$@" 2>&1 | sed -n 's/.*Overall exposure level for textbackd.service: \([0-9.]*\).*/\1/p'; }
at_most_1_7() { python3 -c "import sys; sys.exit(not (0 < float(sys.argv[1] or 99) <= 1.7))" "$1"; }
log_has() { svc_log | grep -q -- "$1"; }
is() { [ "$1" = "$2" ] || { echo "got '$1', want '$2'"; return 1; }; }
sql() { runuser -u textbackd -- sqlite3 "$db" "$1"; }
wait_for() {   # wait_for SECONDS command...: poll until it succeeds
    local n=$(( $1 * 5 )); shift
    while [ "$n" -gt 0 ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; n=$((n - 1)); done
    return 1
}
journal() { journalctl -u textbackd --no-pager -o cat 2>/dev/null; }
journal_since() { journalctl -u textbackd --no-pager --since "@${1%.*}" "${@:2}" 2>/dev/null; }   # EPOCH [options]

# --- the service, by systemd or (MODE=chroot) by hand as the unit says --------------
unit=/lib/systemd/system/textbackd.service
svc_start() {
    if [ "$MODE" = boot ]; then systemctl start textbackd; return; fi
    local pre exe
    pre=$(sed -n 's/^ExecStartPre=//p' "$unit"); exe=$(sed -n 's/^ExecStart=//p' "$unit")
    install -d -m 0750 -o textbackd -g textbackd /var/lib/textbackd
    # shellcheck disable=SC2086
    setpriv --reuid textbackd --regid textbackd --init-groups env TEXTBACKD_CONFIG=$conf $pre \
        >>"$here/daemon.log" 2>&1 || return 1
    # shellcheck disable=SC2086
    setpriv --reuid textbackd --regid textbackd --init-groups env TEXTBACKD_CONFIG=$conf $exe \
        >>"$here/daemon.log" 2>&1 &
    echo $! > "$here/daemon.pid"
    sleep 3; svc_active
}
kill_ours() {   # kill_ours PIDFILE WORD [SIGNAL]: only if that PID still runs a command naming WORD
    local pid; pid=$(cat "$1" 2>/dev/null) || return 0
    if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"; then
        kill "-${3:-TERM}" "$pid" 2>/dev/null
        wait_for 30 sh -c "! kill -0 $pid"
    fi
    rm -f "$1"
}
svc_stop() {
    if [ "$MODE" = boot ]; then systemctl stop textbackd; return; fi
    kill_ours "$here/daemon.pid" textbackd
}
svc_active() {
    if [ "$MODE" = boot ]; then [ "$(systemctl show -p ActiveState --value textbackd)" = active ]; return; fi
    [ -f "$here/daemon.pid" ] && kill -0 "$(cat "$here/daemon.pid")" 2>/dev/null
}
svc_log() { if [ "$MODE" = boot ]; then journal; else cat "$here/daemon.log"; fi; }
main_pid() {
    if [ "$MODE" = boot ]; then systemctl show -p MainPID --value textbackd; else cat "$here/daemon.pid"; fi
}

# the one file the admin edits: a business name and, for the test, the gateway as sender
edit_config() {
    python3 - "$conf" <<'PY'
import re, sys
p = sys.argv[1]
s = open(p).read()
s, n1 = re.subn(r'(?m)^name = ""[^\n]*$', 'name = "Apex Plumbing"', s, count=1)
gw = '''[[senders]]
name = "gw"
kind = "http"
url = "http://127.0.0.1:18080/send"
body_format = "json"
from = "+12125550100"
[senders.body]
to = "{to}"
text = "{text}"
'''
s, n2 = re.subn(r'(?ms)^\[\[senders\]\]\nname = "modem1".*?\n\n', gw + "\n", s, count=1)
assert n1 == n2 == 1, (n1, n2)
with open(p, "w") as f:   # in place: keeps the file's owner and mode
    f.write(s)
PY
}
start_gateway() {   # start_gateway DELAY [HOLD-TEXT]
    ./gateway.py 18080 "$1" "$gwlog" ${2:+"$2"} & echo $! > "$here/gateway.pid"
    wait_for 10 python3 -c 'import socket; socket.create_connection(("127.0.0.1", 18080), 1)'
}
stop_gateway() { kill_ours "$here/gateway.pid" gateway.py; }
amilog=$here/ami-logins.log
start_pbx() {      # an idle Asterisk on 127.0.0.1:5038 that wants the package's generated secret
    ./fake_asterisk.py 5038 /etc/textbackd/pbx.secret "$amilog" & echo $! > "$here/pbx.pid"
    wait_for 10 python3 -c 'import socket; socket.create_connection(("127.0.0.1", 5038), 1)'
}

# files outside the package manager's view, to find what a purge leaves behind
snapshot() {
    find /etc /opt /srv /usr/local /var/lib -xdev \
        \( -path /var/lib/apt -o -path /var/lib/dpkg -o -path /var/cache \) -prune -o -print | sort
}
leftovers() {   # paths new since the snapshot that no package owns, and paths gone since
    comm -13 "$here/before.txt" <(snapshot) | while read -r p; do
        dpkg -S "$p" >/dev/null 2>&1 || echo "$p"
    done
    comm -23 "$here/before.txt" <(snapshot) | sed 's/^/gone: /'
}

step "apt-get update ($MODE mode)"
apt-get update -qq >/dev/null || { echo "FAIL  apt-get update"; exit 1; }
snapshot > "$here/before.txt"

########################################################################################
step "A. fresh install of $NEW_DEB"
apt-get install "${apt_opts[@]}" "./$NEW_DEB" > "$here/install.log" 2>&1
check "apt install ./$NEW_DEB succeeds on a clean Debian 12 root, pulling its dependencies" \
    dpkg-query -W -f='${Status}' textbackd
grep -A6 "^textbackd is installed" "$here/install.log" | sed 's/^/    | /'
check "postinst says it did not start, why (check-config), what to edit and how to start" \
    sh -c "grep -q 'not started' $here/install.log && grep -q 'business.name: must not be empty' $here/install.log \
           && grep -q 'systemctl start textbackd' $here/install.log"
check "the textbackd system user and group exist, with no login shell" \
    sh -c 'getent passwd textbackd | grep -q ":/var/lib/textbackd:/usr/sbin/nologin$" && getent group textbackd'
check "textbackd is in group dialout (the modem)" sh -c 'id -nG textbackd | grep -qw dialout'
check "/var/lib/textbackd is 0750 textbackd:textbackd" is "$(stat -c '%a %U:%G' /var/lib/textbackd)" "750 textbackd:textbackd"
check "$conf is a conffile" sh -c "dpkg-query -W -f='\${Conffiles}' textbackd | grep -q ' $conf '"
check "$conf is 0640 root:textbackd" is "$(stat -c '%a %U:%G' $conf)" "640 root:textbackd"
check "the PBX secret was generated, 0640 root:textbackd" \
    sh -c "[ \"\$(stat -c '%a %U:%G' /etc/textbackd/pbx.secret)\" = '640 root:textbackd' ] && [ -s /etc/textbackd/pbx.secret ]"
check "textbackd is on PATH as /usr/bin/textbackd" is "$(command -v textbackd)" /usr/bin/textbackd
textbackd --version | sed 's/^/    | /'
check "textbackd --version names the version, the store schema and Python" \
    sh -c "textbackd --version | grep -q '^store schema $NEW_SCHEMA;' && textbackd --version | grep -q '^Python 3.11'"
check "textbackd(8) is installed" test -s /usr/share/man/man8/textbackd.8.gz
check "bash completion completes subcommands" bash -c \
    'source /usr/share/bash-completion/completions/textbackd; COMP_WORDS=(textbackd che); COMP_CWORD=1; _textbackd; [ "${COMPREPLY[*]}" = check-config ]'
check "the byte code was compiled at install, for the installed paths" \
    sh -c 'ls /opt/venvs/textbackd/lib/python3.11/site-packages/textbackd/__pycache__/*.pyc >/dev/null'
if [ "$MODE" = boot ]; then
    check "the unit is enabled" is "$(systemctl is-enabled textbackd)" enabled
    check "the unit is not running after the install" not svc_active
    systemctl start textbackd 2>/dev/null
    check "systemctl start refuses the unedited config (ExecStartPre check-config)" not svc_active
    check "the journal says why: business.name must not be empty" log_has 'business.name: must not be empty'
    systemctl stop textbackd; systemctl reset-failed textbackd 2>/dev/null
    systemd-analyze verify "$unit" > "$here/verify.log" 2>&1; rc=$?
    check "systemd-analyze verify accepts the installed unit" sh -c "[ $rc = 0 ] && ! grep 'textbackd.service:' $here/verify.log"
    score=$(exposure textbackd.service)
    echo "    | systemd-analyze security textbackd.service (the loaded unit): $score"
    check "systemd-analyze security rates the loaded unit 1.7 or better" at_most_1_7 "$score"
else
    systemd-analyze verify "$unit" > "$here/verify.log" 2>&1; rc=$?
    check "systemd-analyze verify accepts the installed unit" sh -c "[ $rc = 0 ] && ! grep 'textbackd.service:' $here/verify.log"
fi
score=$(exposure --offline=true "$unit")
echo "    | systemd-analyze security --offline=true $unit: $score"
check "systemd-analyze security --offline rates the installed unit file 1.7 or better" at_most_1_7 "$score"

step "A. edit one file, start"
edit_config
check "after the edit, check-config accepts the file (as the daemon's user)" runuser -u textbackd -- textbackd check-config -q
check "the edit kept the file's owner and mode" is "$(stat -c '%a %U:%G' $conf)" "640 root:textbackd"
start_gateway 0
start_pbx
check "systemctl start textbackd starts the daemon" svc_start
check "the daemon logs in to the PBX with the secret the package generated" \
    wait_for 20 sh -c "grep -qx accepted $amilog && ! grep -q refused $amilog"
pid=$(main_pid)
check "the daemon runs as textbackd" is "$(awk '/^Uid:/ {print $2}' /proc/$pid/status)" "$(id -u textbackd)"
check "the daemon has group dialout" \
    sh -c "awk '/^Groups:/' /proc/$pid/status | grep -qw \"\$(getent group dialout | cut -d: -f3)\""
runuser -u textbackd -- textbackd reply +12125550150 "Fresh install: text from the package" > /dev/null
check "a queued text goes out through the configured sender" wait_for 30 grep -q "Fresh install" "$gwlog"
check "the store was created in /var/lib/textbackd, owned by textbackd" is "$(stat -c '%U' $db)" textbackd
if [ "$MODE" = boot ]; then
    check "the daemon logs to the journal (JSON lines)" sh -c "journalctl -u textbackd -o cat | grep -q '^{.*\"event\"'"
fi
check "textbackd --version reads the running store's schema" sh -c "textbackd --version | grep -q ': schema $NEW_SCHEMA$'"

step "A. remove, then purge"
[ "$MODE" = chroot ] && svc_stop
apt-get remove "${apt_opts[@]}" textbackd > "$here/remove.log" 2>&1
check "apt remove stops the daemon" not svc_active
check "apt remove keeps the store" test -s "$db"
check "apt remove keeps the edited config" grep -q '^name = "Apex Plumbing"' "$conf"
check "apt remove leaves nothing in /opt/venvs/textbackd (the compiled byte code too)" test ! -e /opt/venvs/textbackd
check "apt remove takes /usr/bin/textbackd" test ! -e /usr/bin/textbackd
apt-get purge "${apt_opts[@]}" textbackd > "$here/purge.log" 2>&1
check "apt purge deletes the store directory" test ! -e /var/lib/textbackd
check "apt purge deletes /etc/textbackd with the secret" test ! -e /etc/textbackd
check "apt purge drops the config's statoverride" sh -c '! dpkg-statoverride --list | grep -q textbackd'
check "apt purge leaves no path named textbackd (the user textbackd stays, by design)" \
    is "$(comm -13 "$here/before.txt" <(snapshot) | grep textbackd)" ""
check "apt purge takes away nothing that was there before (base-files' /opt stays)" \
    is "$(comm -23 "$here/before.txt" <(snapshot))" ""
stop_gateway; rm -f "$gwlog"

########################################################################################
if [ -z "${OLD_DEB:-}" ]; then
    echo; echo "no old package: the upgrade test was not run"
else
step "B. install the old package $OLD_DEB (store schema $OLD_SCHEMA) and start it"
apt-get install "${apt_opts[@]}" "./$OLD_DEB" > "$here/install-old.log" 2>&1
check "the old package installs" dpkg-query -W -f='${Version}' textbackd
edit_config
start_gateway 0.5 "Waiting text 2"
check "the old daemon starts" svc_start
check "the old daemon made a schema $OLD_SCHEMA store" wait_for 20 sh -c "[ \"\$(runuser -u textbackd -- sqlite3 $db 'PRAGMA user_version')\" = $OLD_SCHEMA ]"

step "B. 8 texts due, 4 for tomorrow"
for i in 0 1 2 3 4 5 6 7; do
    runuser -u textbackd -- textbackd reply "+1212555012$i" "Waiting text $i" > /dev/null
done
runuser -u textbackd -- /opt/venvs/textbackd/bin/python - "$db" <<'PY'
import sys, time
try:
    from textbackd.store.db import Store
    from textbackd.core.model import MessageState
except ImportError:  # the old tree's layout
    from textbackd.store import Store
    from textbackd.model import MessageState
s = Store(sys.argv[1])
now = time.time()
for i in range(4):
    s.add_message(to=f"+121255501{30 + i}", kind="staff", state=MessageState.SCHEDULED, now=now,
                  send_at=now + 86400, text=f"Tomorrow text {i}")
s.close()
PY
check "12 texts are scheduled in the store" is "$(sql "SELECT COUNT(*) FROM messages WHERE state IN ('scheduled','sending','sent')")" 12
check "the old daemon is sending them: the third is in flight (held by the gateway)" wait_for 30 test -e "$gwlog.held"

step "B. upgrade to $NEW_DEB over the running daemon"
t_up=$(date +%s.%N)
if [ "$MODE" = chroot ]; then
    svc_stop & stopper=$!
else
    apt-get install "${apt_opts[@]}" "./$NEW_DEB" > "$here/upgrade.log" 2>&1 & upgrader=$!
fi
# the send stays in flight until the daemon has been told to stop, then finishes
[ "$MODE" = boot ] && wait_for 60 sh -c "journalctl -u textbackd -o cat --since @${t_up%.*} | grep -q 'Stopping textbackd'"
sleep 1; touch "$gwlog.release"
if [ "$MODE" = chroot ]; then
    wait "$stopper"
    apt-get install "${apt_opts[@]}" "./$NEW_DEB" > "$here/upgrade.log" 2>&1
else
    wait "$upgrader"
fi
check "apt install ./$NEW_DEB upgrades the package" is "$(dpkg-query -W -f='${Version}' textbackd)" "$NEW_VERSION"
grep 'textbackd:' "$here/upgrade.log" | sed 's/^/    | /'
[ "$MODE" = chroot ] && svc_start >/dev/null
check "the daemon runs again after the upgrade" svc_active
t_stop=$t_up
if [ "$MODE" = boot ]; then
    journal_since "$t_up" -o cat > "$here/upgrade-journal.log"
    check "the old daemon was stopped by SIGTERM and exited cleanly (not killed)" \
        sh -c "grep -q 'Stopping textbackd' $here/upgrade-journal.log && ! grep -qE 'code=killed|stop-sigterm.*timed out|Failed with result' $here/upgrade-journal.log"
    t_stop=$(journal_since "$t_up" -o short-unix | grep 'Stopping textbackd' | head -n 1 | cut -d' ' -f1)
fi
check "preinst backed the store up with sqlite3 .backup, at schema $OLD_SCHEMA" \
    sh -c "f=\$(ls /var/lib/textbackd/backups/textbackd.db.$OLD_VERSION.* | head -n 1) \
           && [ \"\$(runuser -u textbackd -- sqlite3 \$f 'PRAGMA user_version')\" = $OLD_SCHEMA ] \
           && [ \"\$(runuser -u textbackd -- sqlite3 \$f 'SELECT COUNT(*) FROM messages')\" = 12 ]"
check "the store was migrated to schema $NEW_SCHEMA on start" wait_for 20 sh -c "[ \"\$(runuser -u textbackd -- sqlite3 $db 'PRAGMA user_version')\" = $NEW_SCHEMA ]"
check "the new daemon sends the rest: 8 texts sent" wait_for 60 sh -c "[ \"\$(runuser -u textbackd -- sqlite3 $db \"SELECT COUNT(*) FROM messages WHERE state='sent'\")\" = 8 ]"
sleep 2   # a second send of anything would show up by now
python3 - "$gwlog" "$t_stop" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
up = float(sys.argv[2])
old = [r["text"] for r in rows if r["end"] < up]
flight = [r["text"] for r in rows if r["start"] < up < r["end"]]
new = [r["text"] for r in rows if r["start"] > up]
print(f"    | gateway: {len(rows)} requests: sent before the stop {old}; in flight at SIGTERM {flight}; "
      f"sent by the new version {new}")
open(sys.argv[1] + ".flight", "w").write(",".join(flight))
PY
check "a send was in flight when the old daemon got SIGTERM (Waiting text 2, held by the gateway)" \
    is "$(cat "$gwlog.flight")" "Waiting text 2"
check "the text in flight at SIGTERM was answered and is sent, not in doubt" \
    is "$(sql "SELECT state FROM messages WHERE text = 'Waiting text 2'")" sent
check "the gateway got each of the 8 due texts exactly once" \
    sh -c "[ \$(wc -l < $gwlog) = 8 ] && [ \$(python3 -c \"import json; print(len({json.loads(l)['text'] for l in open('$gwlog')}))\") = 8 ]"
check "the store holds each of the 12 texts once" is "$(sql 'SELECT COUNT(*), COUNT(DISTINCT text) FROM messages')" "12|12"
check "no text is in doubt (unknown) or failed" is "$(sql "SELECT COUNT(*) FROM messages WHERE state IN ('unknown','failed','sending')")" 0
check "the 4 texts for tomorrow still wait, scheduled" is "$(sql "SELECT COUNT(*) FROM messages WHERE state='scheduled' AND send_at > strftime('%s','now') + 80000")" 4
check "the edited config was kept over the upgrade" grep -q '^name = "Apex Plumbing"' "$conf"

step "B. downgrade to $OLD_DEB: refused on the newer store"
[ "$MODE" = chroot ] && svc_stop
apt-get install "${apt_opts[@]}" --allow-downgrades "./$OLD_DEB" > "$here/downgrade.log" 2>&1
[ "$MODE" = chroot ] && svc_start >/dev/null
check "the downgraded package is installed" is "$(dpkg-query -W -f='${Version}' textbackd)" "$OLD_VERSION"
check "the old daemon does not run on the newer store" not svc_active
check "it says why: written by a newer textbackd (schema $NEW_SCHEMA, this one knows $OLD_SCHEMA)" \
    log_has "written by a newer textbackd (schema $NEW_SCHEMA, this one knows $OLD_SCHEMA); upgrade textbackd or restore a backup"
check "the store was left as it was (schema $NEW_SCHEMA, 12 texts)" is "$(sql 'SELECT COUNT(*) FROM messages'; sql 'PRAGMA user_version')" "12
$NEW_SCHEMA"

step "B. roll back as README says: restore the backup taken before the upgrade"
stop_gateway
backup=$(ls -t /var/lib/textbackd/backups/textbackd.db."$OLD_VERSION".* | head -n 1)
[ "$MODE" = boot ] && systemctl stop textbackd && systemctl reset-failed textbackd
runuser -u textbackd -- sqlite3 "$db" ".restore '$backup'"
check "the restored store is the backup's: schema $OLD_SCHEMA" is "$(sql 'PRAGMA user_version')" "$OLD_SCHEMA"
check "the old version starts on it" svc_start
svc_stop

step "B. purge"
apt-get purge "${apt_opts[@]}" textbackd > "$here/purge2.log" 2>&1
check "apt purge after the upgrade leaves no store, backups or config" sh -c '[ ! -e /var/lib/textbackd ] && [ ! -e /etc/textbackd ]'
apt-get autoremove --purge "${apt_opts[@]}" > "$here/autoremove.log" 2>&1
leftovers > "$here/leftovers.txt"
sed 's/^/    | left: /' "$here/leftovers.txt"
check "with its dependencies purged too, nothing is left that was not there before (as piuparts checks)" \
    test ! -s "$here/leftovers.txt"
fi

echo
echo "package test: $(( $(date +%s) - T0 )) s in the container"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
