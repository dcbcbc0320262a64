package checks

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// PhoneNumber parses a contact's number and returns it in E.164 form
// ("+442079460018"; ITU-T E.164). The input must carry its country code
// ("+44 20 7946 0018", "+1 (555) 555-0100" and "+44 (0)20 7946 0018" are
// accepted and normalised); its length must be possible for the region of
// that code (libphonenumber's metadata, via github.com/nyaruka/phonenumbers).
// Extensions and local-only numbers are refused: an SMS cannot reach them.
// The error says what is wrong and how to write the number.
func PhoneNumber(s string) (string, error) {
	if !strings.HasPrefix(strings.TrimSpace(s), "+") {
		return "", fmt.Errorf("%q has no country code: write it in E.164 form, + then the country code and the number, e.g. +15555550100", s)
	}
	n, err := phonenumbers.Parse(s, "ZZ")
	if errors.Is(err, phonenumbers.ErrInvalidCountryCode) {
		return "", fmt.Errorf("%q does not start with a country calling code (+1, +44, +49, ...)", s)
	}
	if err != nil {
		return "", fmt.Errorf("%q is not a phone number (%v); write it in E.164 form, e.g. +15555550100", s, err)
	}
	if n.GetExtension() != "" {
		return "", fmt.Errorf("%q has an extension (%s): SMS cannot reach one; give the mobile number", s, n.GetExtension())
	}
	e164 := phonenumbers.Format(n, phonenumbers.E164)
	region := phonenumbers.GetRegionCodeForCountryCode(int(n.GetCountryCode()))
	where := fmt.Sprintf("region %s (+%d)", region, n.GetCountryCode())
	if len(e164) > 16 { // "+" and 15 digits (ITU-T E.164 section 6.1)
		return "", fmt.Errorf("%q is longer than an E.164 number (at most 15 digits with the country code)", s)
	}
	switch phonenumbers.IsPossibleNumberWithReason(n) {
	case phonenumbers.IS_POSSIBLE:
		// The E.164 form must read back as itself (leading zeros after
		// the country code, "+49 00...", are partly dropped by it), or
		// the number would change each time the file is read.
		if again, err := phonenumbers.Parse(e164, "ZZ"); err != nil || phonenumbers.Format(again, phonenumbers.E164) != e164 ||
			phonenumbers.IsPossibleNumberWithReason(again) != phonenumbers.IS_POSSIBLE {
			return "", fmt.Errorf("%q is not a number of %s: digits after the country code are lost in its E.164 form %s", s, where, e164)
		}
		return e164, nil
	case phonenumbers.INVALID_COUNTRY_CODE:
		return "", fmt.Errorf("%q: +%d is not a country calling code", s, n.GetCountryCode())
	case phonenumbers.TOO_SHORT:
		return "", fmt.Errorf("%q is too short for a number of %s", s, where)
	case phonenumbers.TOO_LONG:
		return "", fmt.Errorf("%q is too long for a number of %s", s, where)
	case phonenumbers.IS_POSSIBLE_LOCAL_ONLY:
		return "", fmt.Errorf("%q is a local number of %s: add the area code", s, where)
	default:
		return "", fmt.Errorf("%q has no possible length for a number of %s", s, where)
	}
}
