package parse

import (
	"encoding/binary"
	"time"
)

// parseTime parses the RFC 3339 timestamps kube-apiserver writes,
// 2006-01-02T15:04:05[.fraction](Z|±hh:mm), with the checks of the standard
// library's own fast RFC 3339 path (year 0-9999, real days of month, hours
// 0-23, minutes and seconds 0-59, offsets up to 23:59, digits past the
// ninth fractional one ignored). It returns the instant in UTC without
// allocating.
func parseTime(s []byte) (time.Time, bool) {
	if len(s) < len("2006-01-02T15:04:05Z") ||
		s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	ok := true
	num := func(s []byte, lo, hi int) int {
		x := 0
		for _, c := range s {
			if c < '0' || c > '9' {
				ok = false
				return lo
			}
			x = x*10 + int(c-'0')
		}
		if x < lo || x > hi {
			ok = false
		}
		return x
	}
	year := num(s[0:4], 0, 9999)
	month := num(s[5:7], 1, 12)
	day := num(s[8:10], 1, daysIn(month, year))
	hour := num(s[11:13], 0, 23)
	minute := num(s[14:16], 0, 59)
	sec := num(s[17:19], 0, 59)
	if !ok {
		return time.Time{}, false
	}
	s = s[19:]

	nsec := 0
	if len(s) >= 2 && s[0] == '.' && isDigit(s[1]) {
		n := 1
		for ; n < len(s) && isDigit(s[n]); n++ {
			if n <= 9 {
				nsec = nsec*10 + int(s[n]-'0')
			}
		}
		for k := n; k <= 9; k++ {
			nsec *= 10
		}
		s = s[n:]
	}

	offset := 0
	if len(s) != 1 || s[0] != 'Z' {
		if len(s) != len("-07:00") || (s[0] != '+' && s[0] != '-') || s[3] != ':' {
			return time.Time{}, false
		}
		offset = (num(s[1:3], 0, 23)*60 + num(s[4:6], 0, 59)) * 60
		if !ok {
			return time.Time{}, false
		}
		if s[0] == '-' {
			offset = -offset
		}
	}
	unix := daysSinceEpoch(year, month, day)*86400 + int64(hour*3600+minute*60+sec-offset)
	return time.Unix(unix, int64(nsec)).UTC(), true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysSinceEpoch is the number of days from 1970-01-01 to the date in the
// proleptic Gregorian calendar (Howard Hinnant's days_from_civil).
func daysSinceEpoch(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y
	if era < 0 {
		era -= 399
	}
	era /= 400
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}

// parseMicroZ is the fast path of parseTime for exactly the layout
// kube-apiserver writes, 2006-01-02T15:04:05.000000Z. The date of the last
// timestamp is cached in c: in an audit log, consecutive timestamps share it.
func parseMicroZ(s []byte, c *dateCache) (time.Time, bool) {
	if len(s) != len("2006-01-02T15:04:05.000000Z") || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != '.' || s[26] != 'Z' {
		return time.Time{}, false
	}
	var days int64
	if k := binary.LittleEndian.Uint64(s); k == c.key && s[8] == c.d8 && s[9] == c.d9 && c.ok {
		days = c.days
	} else {
		if s[4] != '-' || s[7] != '-' {
			return time.Time{}, false
		}
		year, ok1 := digits4(s[0:4])
		month, ok2 := digits2(s[5:7])
		day, ok3 := digits2(s[8:10])
		if !ok1 || !ok2 || !ok3 || month < 1 || month > 12 || day < 1 || day > daysIn(month, year) {
			return time.Time{}, false
		}
		days = daysSinceEpoch(year, month, day)
		*c = dateCache{key: k, d8: s[8], d9: s[9], days: days, ok: true}
	}
	hour, ok1 := digits2(s[11:13])
	minute, ok2 := digits2(s[14:16])
	sec, ok3 := digits2(s[17:19])
	hi, ok4 := digits2(s[20:22])
	mid, ok5 := digits2(s[22:24])
	lo, ok6 := digits2(s[24:26])
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	unix := days*86400 + int64(hour*3600+minute*60+sec)
	return time.Unix(unix, int64((hi*10000+mid*100+lo)*1000)).UTC(), true
}

// dateCache remembers the days since the epoch of the date of the last
// timestamp: key holds its first eight bytes ("2006-01-"), d8 and d9 the day.
type dateCache struct {
	key    uint64
	d8, d9 byte
	days   int64
	ok     bool
}

func digits2(s []byte) (int, bool) {
	a, b := s[0]-'0', s[1]-'0'
	return int(a)*10 + int(b), a <= 9 && b <= 9
}

func digits4(s []byte) (int, bool) {
	h, ok1 := digits2(s[0:2])
	l, ok2 := digits2(s[2:4])
	return h*100 + l, ok1 && ok2
}
