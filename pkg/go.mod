module github.com/emailscout/emailscout/pkg

go 1.26.0

require (
	github.com/cenkalti/backoff/v5 v5.0.3
	github.com/emersion/go-imap/v2 v2.0.0-beta.8
	github.com/emersion/go-msgauth v0.7.0
	github.com/emersion/go-sasl v0.0.0-20241020182733-b788ff22d5a6
	github.com/emersion/go-smtp v0.26.0
	github.com/jonboulle/clockwork v0.5.0
	github.com/nyaruka/phonenumbers v1.8.1
	go.yaml.in/yaml/v3 v3.0.6
	golang.org/x/oauth2 v0.38.0
)

require (
	golang.org/x/crypto v0.31.0 // indirect
	google.golang.org/protobuf v1.36.11 // indirect
)

require (
	github.com/emersion/go-message v0.18.2
	golang.org/x/text v0.23.0 // indirect
)
