package app_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/internal/app"
	"github.com/tandemledger/tandem/internal/dbtest"
	"github.com/tandemledger/tandem/network"
)

// TestProgramMetricsHandComputed checks the program's metrics on a small network worked out
// by hand:
//
//	participant  band  connections (other's band)
//	ana          low   mo (high), tia (low)
//	ben          low   mo (high), omar (high), xia (unknown)
//	cy           high  mo (high)
//
// Economic connectedness: the low-band participants' connections with a known band are
// ana–mo, ana–tia, ben–mo, ben–omar; 3 of the 4 are high-band: 2 × 3/4 = 1.5.
// Cross-class share: of the 5 connections with both bands known (xia's is unknown), ana–mo,
// ben–mo and ben–omar cross: 3/5 = 0.6. Near-peer conversion: ana later also coaches: 1/3.
func TestProgramMetricsHandComputed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.New(t, dbtest.Options{MaxConns: 8})
	a := buildApp(t, pool, app.Config{})
	n := a.Network
	newProgram(t, n, "p1", "100.00", "100.00")
	bands := map[string]string{"ana": "low", "ben": "low", "cy": "high", "mo": "high", "tia": "low", "omar": "high", "xia": ""}
	for _, p := range []string{"mo", "tia", "omar", "xia"} {
		addMentor(t, n, p)
	}
	for _, p := range []string{"ana", "ben", "cy"} {
		addParticipant(t, n, "p1", p, "mo")
	}
	for p, b := range bands {
		if b != "" {
			_, err := n.SetBand(ctx, admin, p, b, "intake")
			require.NoError(t, err)
		}
	}
	for _, c := range [][2]string{{"ana", "tia"}, {"ben", "omar"}, {"ben", "xia"}} {
		_, err := n.Connect(ctx, admin, network.NewConnection{ParticipantID: c[0], OtherID: c[1], Role: "professional",
			Origin: "self_reported", StartedOn: "2026-09-02"})
		require.NoError(t, err)
	}
	_, err := n.AddRole(ctx, admin, "ana", "coach")
	require.NoError(t, err)

	m, err := n.ProgramMetrics(ctx, "p1")
	require.NoError(t, err)
	require.Equal(t, 3, m.Participants)
	require.Equal(t, map[string]int{"mentor": 3, "professional": 3}, m.ConnectionsByRole)
	require.NotNil(t, m.EconomicConnectedness)
	require.Equal(t, "1.5", m.EconomicConnectedness.String())
	require.Equal(t, "0.6", m.CrossClassShare.String())
	require.Equal(t, 1, m.BecameCoaches)
	require.Equal(t, "0.3333", m.NearPeerConversion.String())

	// Per participant: ben's EC_i = 2 × 2 high ÷ 2 counted (xia's band unknown) = 2.
	p, err := n.Progress(ctx, "ben")
	require.NoError(t, err)
	require.Equal(t, "2", p.Programs[0].Metrics.EconomicConnectedness.String())
	require.Equal(t, 3, p.Programs[0].Metrics.ConnectionsByRole["mentor"]+p.Programs[0].Metrics.ConnectionsByRole["professional"])
}
