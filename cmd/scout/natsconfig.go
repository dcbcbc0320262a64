package main

import (
	"fmt"
	"strings"

	"github.com/emailscout/emailscout/pkg/natsauth"
	"github.com/spf13/cobra"
)

func init() {
	commands = append(commands, func(getenv func(string) string) *cobra.Command {
		var sites, leafSites, domain, leaf, hubURL, caFile string
		cmd := &cobra.Command{
			Use:   "nats-config",
			Short: "Print the nats-server configuration of Email Scout's NATS users and their permissions",
			Long: `Print the nats-server configuration block of the account SCOUT: one user per
service (one sender and one receiver per site), "provision" for scout provision,
and with --leaf-sites one leaf node user per remote site. Each user is an NKey
whose public key nats-server reads from an environment variable
(SCOUT_NKEY_<USER>, from a Secret), with permissions derived from the services'
roles (pkg/events/roles.go): publish only the subjects the service produces, use
only its own durable consumer and KV buckets, replies on _INBOX.>.

With --leaf SITE it prints instead the configuration of that site's leaf node
server (docs/deploy.md, "Adding a site in another region").`,
			Example: `  scout nats-config --sites eu-west,us-east > deploy/k8s/overlays/prod/nats-auth.conf
  scout nats-config --sites eu-west,us-east,ap-south --domain scout --leaf-sites ap-south
  scout nats-config --sites eu-west,us-east,ap-south --domain scout --leaf ap-south \
    --hub-url tls://nats-leaf.scout.example:7422 --ca /etc/nats-hub-ca/ca.crt`,
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				o := natsauth.Options{Sites: splitList(sites), JetStreamDomain: domain}
				if leaf != "" {
					conf, err := natsauth.LeafServerConfig(natsauth.LeafOptions{Site: leaf, HubURL: hubURL, CAFile: caFile}, o)
					if err != nil {
						return exitError{code: 2, err: err}
					}
					_, err = fmt.Fprint(cmd.OutOrStdout(), conf)
					return err
				}
				users, err := natsauth.HubUsers(o, splitList(leafSites))
				if err != nil {
					return exitError{code: 2, err: err}
				}
				_, err = fmt.Fprint(cmd.OutOrStdout(), natsauth.AccountsConfig(users))
				return err
			},
		}
		f := cmd.Flags()
		f.StringVar(&sites, "sites", "", "every site of the deployment, comma-separated (the check file's sites)")
		f.StringVar(&domain, "domain", "", "the hub's JetStream domain, for sites behind leaf nodes (their SCOUT_NATS_JS_DOMAIN)")
		f.StringVar(&leafSites, "leaf-sites", "", "sites that join through a leaf node: each gets a user leaf-<site>")
		f.StringVar(&leaf, "leaf", "", "print the configuration of this site's leaf node server instead")
		f.StringVar(&hubURL, "hub-url", "", "with --leaf: the hub's leaf node listener, tls://host:7422")
		f.StringVar(&caFile, "ca", "", "with --leaf: the CA file that verifies the hub's certificate, in the leaf node's pod")
		return cmd
	})
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
