module github.com/emailscout/emailscout/test/e2e

go 1.26.0

require (
	github.com/emailscout/emailscout/pkg v0.0.0
	github.com/emersion/go-smtp v0.26.0
)

require (
	github.com/emersion/go-message v0.18.2 // indirect
	github.com/emersion/go-sasl v0.0.0-20241020182733-b788ff22d5a6 // indirect
	golang.org/x/text v0.14.0 // indirect
)

replace github.com/emailscout/emailscout/pkg => ../../pkg
