package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tandemledger/tandem/access"
)

const tokenUsage = `usage:
  tandem token create --role admin|auditor|coach|participant --name NAME [--person ID] [--expires DURATION]
                      prints the token once: only its hash is stored
  tandem token list   every token (never the secret), with role, person, expiry, revocation
  tandem token revoke ID

The command line acts with the database's credentials (DATABASE_URL): whoever can run it
can already change the database, so it needs no token. Its changes are recorded in the audit
trail as "cli:<os user>".
`

// cliActor is the principal of the command line: an operator holding the database
// credentials, recorded by their operating-system user name.
func cliActor() access.Principal {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if name == "" {
		name = "unknown"
	}
	return access.Principal{Name: "cli:" + name, Role: access.Admin}
}

func tokenCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, tokenUsage)
		if len(args) == 0 {
			return fmt.Errorf("%w: tandem token needs a command", errUsage)
		}
		return nil
	}
	cmd := args[0]
	fs := flag.NewFlagSet("token "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var role, name, person string
	var expires time.Duration
	asJSON := fs.Bool("json", false, "print JSON")
	switch cmd {
	case "create":
		fs.StringVar(&role, "role", "", "admin, auditor, coach or participant")
		fs.StringVar(&name, "name", "", "who or what holds the token (shown in the audit trail)")
		fs.StringVar(&person, "person", "", "the person a coach or participant token acts for")
		fs.DurationVar(&expires, "expires", 0, "lifetime, e.g. 720h (default: does not expire)")
	case "list", "revoke":
	default:
		fmt.Fprint(stderr, tokenUsage)
		return fmt.Errorf("%w: unknown token command %q", errUsage, cmd)
	}
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if want := map[string]int{"revoke": 1}[cmd]; len(pos) != want {
		return fmt.Errorf("%w: tandem token %s takes %d argument(s), got %d", errUsage, cmd, want, len(pos))
	}
	pool, err := openPool(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	store := access.New(pool)
	printJSON := (&cli{stdout: stdout}).printJSON

	switch cmd {
	case "create":
		tok, secret, err := store.CreateToken(ctx, cliActor(), access.NewToken{Name: name, Role: access.Role(role), PersonID: person, TTL: expires})
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(map[string]any{"token": secret, "id": tok.ID, "role": tok.Role, "person_id": tok.PersonID, "expires_at": tok.ExpiresAt})
		}
		fmt.Fprintf(stdout, "token %s for %q (%s", tok.ID, tok.Name, tok.Role)
		if tok.PersonID != "" {
			fmt.Fprintf(stdout, ", person %s", tok.PersonID)
		}
		if tok.ExpiresAt != nil {
			fmt.Fprintf(stdout, ", expires %s", tok.ExpiresAt.Format(time.RFC3339))
		}
		fmt.Fprintf(stdout, ")\n\n  %s\n\nThis is the only time it is shown: Tandem stores its hash. Send it as\n  Authorization: Bearer <the token>\nor paste it into the sign-in page.\n", secret)
		return nil
	case "list":
		toks, err := store.Tokens(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			if toks == nil {
				toks = []access.Token{}
			}
			return printJSON(map[string]any{"tokens": toks})
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "id\tname\trole\tperson\tcreated\texpires\tstatus")
		now := time.Now()
		for _, t := range toks {
			status := "active"
			switch {
			case t.RevokedAt != nil:
				status = "revoked " + t.RevokedAt.Format(time.RFC3339)
			case t.ExpiresAt != nil && !now.Before(*t.ExpiresAt):
				status = "expired"
			}
			exp := "never"
			if t.ExpiresAt != nil {
				exp = t.ExpiresAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Role, dash(t.PersonID),
				t.CreatedAt.Format(time.RFC3339), exp, status)
		}
		return tw.Flush()
	default: // revoke
		tok, err := store.RevokeToken(ctx, cliActor(), strings.TrimSpace(pos[0]))
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(tok)
		}
		fmt.Fprintf(stdout, "revoked token %s (%s, %s) at %s\n", tok.ID, tok.Name, tok.Role, tok.RevokedAt.Format(time.RFC3339))
		return nil
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
