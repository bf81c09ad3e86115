#!/bin/sh
# As the official image: defaults from the environment, guest usable over the network, the server
# in the foreground as the rabbitmq user. The node's Erlang cookie lives in its HOME, so the CLI
# tools (rabbitmqctl, rabbitmq-diagnostics) must run as rabbitmq too: this entrypoint does that.
set -e
conf=/etc/rabbitmq/conf.d/10-standin.conf
if [ "$(id -u)" = 0 ]; then
  {
    echo "loopback_users.guest = false"
    echo "listeners.tcp.default = 5672"
    # Logs on stdout as in the official image (Debian's package writes files under /var/log).
    echo "log.console = true"
    echo "log.console.level = info"
    echo "log.file = false"
    [ -n "${RABBITMQ_DEFAULT_USER:-}" ] && echo "default_user = $RABBITMQ_DEFAULT_USER"
    [ -n "${RABBITMQ_DEFAULT_PASS:-}" ] && echo "default_pass = $RABBITMQ_DEFAULT_PASS"
    [ -n "${RABBITMQ_DEFAULT_VHOST:-}" ] && echo "default_vhost = $RABBITMQ_DEFAULT_VHOST"
  } > "$conf"
  chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /etc/rabbitmq
  exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups "$0" "$@"
fi
exec "$@"
