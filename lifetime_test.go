package noventiq

import (
	"strings"
	"testing"
	"time"
)

func TestTokenLifeOf(t *testing.T) {
	sent := time.Date(2026, time.March, 1, 12, 0, 0, 0, time.UTC)
	now := sent.Add(200 * time.Millisecond)

	cases := []struct {
		name        string
		date        time.Time
		wantIssued  time.Time
		wantExpires time.Time
	}{
		{"no Date header", time.Time{}, sent, sent.Add(24 * time.Hour)},
		{"Date equals send time", sent, sent, sent.Add(24 * time.Hour)},
		{"Date 3h before send", sent.Add(-3 * time.Hour), sent.Add(-3 * time.Hour), sent.Add(21 * time.Hour)},
		{"API clock 1h ahead", sent.Add(time.Hour), sent.Add(time.Hour), sent.Add(24 * time.Hour)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			life, err := tokenLifeOf(&loginResult{RequestSent: sent, Date: tc.date}, now)
			if err != nil {
				t.Fatalf("tokenLifeOf: %v", err)
			}
			if !life.issuedAt.Equal(tc.wantIssued) {
				t.Errorf("issuedAt = %s, want %s", life.issuedAt, tc.wantIssued)
			}
			if !life.expiresAt.Equal(tc.wantExpires) {
				t.Errorf("expiresAt = %s, want %s", life.expiresAt, tc.wantExpires)
			}
			if want := tc.wantExpires.Sub(now); life.remaining != want {
				t.Errorf("remaining = %s, want %s", life.remaining, want)
			}
			if life.remaining > TokenLifetime {
				t.Errorf("remaining %s is longer than the token lifetime", life.remaining)
			}
		})
	}
}

func TestTokenLifeOfDeadToken(t *testing.T) {
	sent := time.Date(2026, time.March, 1, 12, 0, 0, 0, time.UTC)
	for _, age := range []time.Duration{24 * time.Hour, 25 * time.Hour, 30 * 24 * time.Hour} {
		_, err := tokenLifeOf(&loginResult{RequestSent: sent, Date: sent.Add(-age)}, sent)
		if err == nil {
			t.Errorf("a token issued %s ago was accepted", age)
			continue
		}
		if !strings.Contains(err.Error(), "already expired") {
			t.Errorf("error %q does not say the token already expired", err)
		}
	}
}

func TestLeaseTTL(t *testing.T) {
	now := time.Date(2026, time.March, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name      string
		expiresAt time.Time
		maxTTL    time.Duration
		want      time.Duration
	}{
		{"whole seconds left", now.Add(10 * time.Hour), 0, 10*time.Hour - time.Second},
		{"fraction of a second dropped", now.Add(90*time.Second + 999*time.Millisecond), 0, 89 * time.Second},
		{"capped by the max TTL", now.Add(10 * time.Hour), 20 * time.Second, 20 * time.Second},
		{"max TTL longer than the token", now.Add(30 * time.Second), time.Hour, 29 * time.Second},
		{"under a second and a half left", now.Add(1500 * time.Millisecond), 0, 0},
		{"already expired", now.Add(-time.Second), 0, -2 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := leaseTTL(tc.expiresAt, now, tc.maxTTL)
			if got != tc.want {
				t.Errorf("leaseTTL = %s, want %s", got, tc.want)
			}
			if got > 0 && now.Add(got).After(tc.expiresAt.Add(-leaseMargin)) {
				t.Errorf("a lease of %s would end less than %s before the token", got, leaseMargin)
			}
		})
	}
}
