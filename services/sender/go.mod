module github.com/emailscout/emailscout/services/sender

go 1.26.0

require (
	github.com/emailscout/emailscout/pkg v0.0.0
	github.com/emersion/go-imap/v2 v2.0.0-beta.8
	github.com/emersion/go-smtp v0.26.0
)

require (
	github.com/emersion/go-message v0.18.2 // indirect
	github.com/emersion/go-sasl v0.0.0-20241020182733-b788ff22d5a6 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
)

replace (
	github.com/emailscout/emailscout/internal => ../../internal
	github.com/emailscout/emailscout/pkg => ../../pkg
)
