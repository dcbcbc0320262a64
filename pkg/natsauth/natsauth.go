// Package natsauth derives the NATS users of Email Scout and their
// permissions from the services' roles (events.Roles), and renders them as
// nats-server configuration: each service connects as its own user and may
// publish only the subjects it produces and use only its own consumer and
// KV buckets. Standard library only, so that the deploy tests render what
// `scout nats-config` prints.
//
// The JetStream subjects are those of the JetStream wire API
// (https://docs.nats.io/reference/reference-protocols/nats_api_reference):
// consumers are created, read and pulled through
// $JS.API.CONSUMER.{CREATE,INFO,MSG.NEXT}.<stream>.<consumer>, delivered
// messages are acknowledged on $JS.ACK.<stream>.<consumer>.>, a KV bucket B
// is the stream KV_B written on $KV.B.>, and replies come to the client's
// _INBOX.>. Permissions are nats-server authorization
// (https://docs.nats.io/running-a-nats-service/configuration/securing_nats/authorization):
// a deny wins over an allow.
package natsauth

import (
	"fmt"
	"slices"
	"strings"

	"github.com/emailscout/emailscout/pkg/events"
)

// ProvisionUser is the user of `scout provision`: it creates and updates
// the stream and KV buckets, so it has no permission limits.
const ProvisionUser = "provision"

// Rule is one direction of a permission: subjects allowed and denied
// (NATS wildcards * and >).
type Rule struct {
	Allow []string
	Deny  []string
}

// Permissions are a NATS user's publish and subscribe rules.
type Permissions struct {
	Publish   Rule
	Subscribe Rule
}

// User is one NATS user of Email Scout.
type User struct {
	// Name is the service ("evaluator"), "<service>-<site>" for a service
	// of each site, or ProvisionUser.
	Name string
	// Permissions is nil for ProvisionUser (everything in the account).
	Permissions *Permissions
}

// NKeyVar is the environment variable that holds the user's NKey public
// key in the nats-server's environment (from a Secret): "SCOUT_NKEY_" and
// the name in capitals with "-" as "_", e.g. SCOUT_NKEY_SENDER_EU_WEST.
func (u User) NKeyVar() string {
	return "SCOUT_NKEY_" + strings.ToUpper(strings.ReplaceAll(u.Name, "-", "_"))
}

// Options choose what Users derives.
type Options struct {
	// Sites are every site of the deployment ([a-z0-9_-]{1,63}); each gets
	// its own sender and receiver users.
	Sites []string
	// JetStreamDomain, when set, is the JetStream domain of the hub
	// servers: sites behind a leaf node reach JetStream through
	// $JS.<domain>.API (SCOUT_NATS_JS_DOMAIN), so every JetStream API
	// permission is given for that prefix too.
	JetStreamDomain string
}

// Users returns every user of a deployment: ProvisionUser, then each role
// of events.Roles, once per site for the per-site roles. It fails on an
// invalid or repeated site name, or none.
func Users(o Options) ([]User, error) {
	if len(o.Sites) == 0 {
		return nil, fmt.Errorf("natsauth: no sites")
	}
	for i, s := range o.Sites {
		if !events.ValidToken(s) {
			return nil, fmt.Errorf("natsauth: site %q is not [a-z0-9_-]{1,63}", s)
		}
		if slices.Contains(o.Sites[:i], s) {
			return nil, fmt.Errorf("natsauth: site %q is listed twice", s)
		}
	}
	if o.JetStreamDomain != "" && !events.ValidToken(o.JetStreamDomain) {
		return nil, fmt.Errorf("natsauth: JetStream domain %q is not [a-z0-9_-]{1,63}", o.JetStreamDomain)
	}
	users := []User{{Name: ProvisionUser}}
	for _, r := range events.Roles {
		if !r.PerSite {
			p := For(r, "", o)
			users = append(users, User{Name: r.Service, Permissions: &p})
			continue
		}
		for _, site := range o.Sites {
			p := For(r, site, o)
			users = append(users, User{Name: r.Service + "-" + site, Permissions: &p})
		}
	}
	return users, nil
}

// SiteUsers returns the users of one site's services (its sender and
// receiver), as Users derives them: what a leaf node of that site serves.
func SiteUsers(site string, o Options) ([]User, error) {
	all, err := Users(o)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(o.Sites, site) {
		return nil, fmt.Errorf("natsauth: site %q is not one of %v", site, o.Sites)
	}
	var out []User
	for _, r := range events.Roles {
		if !r.PerSite {
			continue
		}
		for _, u := range all {
			if u.Name == r.Service+"-"+site {
				out = append(out, u)
			}
		}
	}
	return out, nil
}

// For returns the permissions of role r (at site, for a per-site role):
//   - publish the role's subject names ("<name>.>", or "<name>.<site>.>"
//     when r.OwnSiteOnly);
//   - its durable consumers (one per partition when partitioned): create/update, info and pull
//     ($JS.API.CONSUMER.{CREATE,INFO,MSG.NEXT}.SCOUT.<durable>) and
//     acknowledge ($JS.ACK.SCOUT.<durable>.>);
//   - with r.ReadsStream, ephemeral ordered consumers on the stream
//     (any name: the client library names them), with every durable
//     consumer of the deployment denied so that it cannot pull or replace
//     another service's;
//   - each bucket's stream info, direct and stored get, watch
//     (an ordered consumer on KV_<bucket>, its flow control on
//     $JS.FC.KV_<bucket>.>) and, when written, $KV.<bucket>.>;
//   - $JS.API.INFO, and subscribe to _INBOX.> for every reply;
//   - subscribe to each of r.Watches at the instance's site
//     ("<name>.<site>.>"), with core NATS.
func For(r events.Role, site string, o Options) Permissions {
	var p Permissions
	api := []string{"$JS.API"}
	if o.JetStreamDomain != "" {
		api = append(api, "$JS."+o.JetStreamDomain+".API")
	}
	eachAPI := func(rule *[]string, format string, args ...any) {
		for _, prefix := range api {
			*rule = append(*rule, prefix+"."+fmt.Sprintf(format, args...))
		}
	}
	for _, name := range r.Publishes {
		if r.OwnSiteOnly && site != "" {
			p.Publish.Allow = append(p.Publish.Allow, name+"."+site+".>")
		} else {
			p.Publish.Allow = append(p.Publish.Allow, name+".>")
		}
	}
	eachAPI(&p.Publish.Allow, "INFO")
	stream := events.StreamName
	if r.Consumer != nil {
		for _, d := range r.Consumer(site).Durables() {
			for _, verb := range []string{"CREATE", "INFO", "MSG.NEXT"} {
				eachAPI(&p.Publish.Allow, "CONSUMER.%s.%s.%s", verb, stream, d)
			}
			p.Publish.Allow = append(p.Publish.Allow, ackSubjects(stream, d)...)
		}
	}
	if r.ReadsStream {
		for _, verb := range []string{"CREATE", "INFO", "MSG.NEXT", "DELETE"} {
			eachAPI(&p.Publish.Allow, "CONSUMER.%s.%s.*", verb, stream)
		}
		eachAPI(&p.Publish.Allow, "CONSUMER.CREATE.%s.*.>", stream) // one filter subject: it follows the name
		for _, d := range durables(o.Sites) {
			for _, verb := range []string{"CREATE", "MSG.NEXT", "DELETE"} {
				eachAPI(&p.Publish.Deny, "CONSUMER.%s.%s.%s", verb, stream, d)
			}
			eachAPI(&p.Publish.Deny, "CONSUMER.CREATE.%s.%s.>", stream, d)
		}
	}
	for _, b := range r.Buckets {
		ks := "KV_" + b.Bucket
		eachAPI(&p.Publish.Allow, "STREAM.INFO.%s", ks)
		eachAPI(&p.Publish.Allow, "STREAM.MSG.GET.%s", ks)
		eachAPI(&p.Publish.Allow, "DIRECT.GET.%s", ks)
		eachAPI(&p.Publish.Allow, "DIRECT.GET.%s.>", ks)
		eachAPI(&p.Publish.Allow, "CONSUMER.CREATE.%s.>", ks)
		eachAPI(&p.Publish.Allow, "CONSUMER.INFO.%s.>", ks)
		eachAPI(&p.Publish.Allow, "CONSUMER.DELETE.%s.>", ks)
		p.Publish.Allow = append(p.Publish.Allow, "$JS.FC."+ks+".>")
		if b.Write {
			p.Publish.Allow = append(p.Publish.Allow, "$KV."+b.Bucket+".>")
		}
	}
	p.Subscribe.Allow = []string{"_INBOX.>"}
	for _, name := range r.Watches {
		if site != "" {
			p.Subscribe.Allow = append(p.Subscribe.Allow, name+"."+site+".>")
		} else {
			p.Subscribe.Allow = append(p.Subscribe.Allow, name+".>")
		}
	}
	return p
}

// ackSubjects are the reply subjects of messages delivered by consumer d
// of stream: $JS.ACK.<stream>.<consumer>.<...> and, from servers with a
// JetStream domain, $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<...>.
func ackSubjects(stream, d string) []string {
	return []string{"$JS.ACK." + stream + "." + d + ".>", "$JS.ACK.*.*." + stream + "." + d + ".>"}
}

// durables are the durable consumers of every role at every site.
func durables(sites []string) []string {
	var out []string
	for _, r := range events.Roles {
		if r.Consumer == nil {
			continue
		}
		if !r.PerSite {
			out = append(out, r.Consumer("").Durables()...)
			continue
		}
		for _, s := range sites {
			out = append(out, r.Consumer(s).Durables()...)
		}
	}
	return out
}
