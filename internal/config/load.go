package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

const (
	// DefaultPath is the config file used when neither the -config flag nor
	// EnvConfig names one. It is relative to the working directory.
	DefaultPath = "configs/syncd.yaml"

	// EnvConfig names the environment variable that picks the config file
	// when the -config flag is empty.
	EnvConfig = "SYNCD_CONFIG"

	// EnvRedisURL names the environment variable that, when non-empty,
	// overrides redis.url. It exists so a deployment can inject the Redis
	// password without writing it into the file.
	EnvRedisURL = "SYNCD_REDIS_URL"

	// maxFileSize bounds how much of a config file is read; a larger file
	// is certainly a mistake (a wrong path) and not worth buffering.
	maxFileSize = 4 << 20
)

// DefaultConfig returns the configuration an empty file yields, except that
// it has no encryption key: there is no safe default key, so it does not
// validate until one is added.
func DefaultConfig() *Config {
	p := DefaultProvider()
	p.Name = "default"
	p.Kind = ProviderFake
	return &Config{
		Redis: RedisConfig{
			URL:         "redis://127.0.0.1:6379/0",
			Prefix:      "syncd:",
			Shards:      16,
			DialTimeout: 5 * time.Second,

			MinReplicasAcked: -1,
			WaitTimeout:      time.Second,
		},
		Log: LogConfig{
			Level:  "info",
			Format: "auto",
		},
		Events: EventsConfig{
			MaxLen: 100000,
		},
		Refresher: RefresherConfig{
			Workers:      32,
			Lease:        time.Minute,
			Batch:        256,
			PollInterval: time.Second,
		},
		Runner: RefresherConfig{
			Workers:      64,
			Lease:        time.Minute,
			Batch:        256,
			PollInterval: time.Second,
		},
		Providers:     []ProviderConfig{p},
		Jobs:          []JobConfig{},
		Admin:         AdminConfig{Listen: "127.0.0.1:9464"},
		ShutdownGrace: 25 * time.Second,
		StatsInterval: time.Minute,
		Authorize:     AuthorizeConfig{StateTTL: 15 * time.Minute},
	}
}

// DefaultProvider returns the values a providers entry starts from before
// its YAML is applied. Name and Kind are empty: they are required.
func DefaultProvider() ProviderConfig {
	return ProviderConfig{
		Lead:            10 * time.Minute,
		Jitter:          2 * time.Minute,
		DefaultLifetime: time.Hour,
		Timeout:         30 * time.Second,
		RetryInitial:    30 * time.Second,
		RetryMax:        30 * time.Minute,
		RetryAfterCap:   time.Hour,
		DegradedAfter:   3,
		CircuitFailures: 20,
		CircuitCooldown: 30 * time.Second,
		Burst:           10,
		MaxConcurrency:  16,
		Digime: DigimeConfig{
			BaseURL: "https://api.digi.me/v1.7/", PollInterval: 3 * time.Second, MaxPolls: 100,
			MaxDuration: 5 * time.Minute, AgentName: "syncd", AgentVersion: "dev",
		},
		OAuth2: OAuth2Config{AuthStyle: "basic", CursorHeader: "X-Next-Cursor"},
	}
}

// DefaultJob returns the values a jobs entry starts from before its YAML is
// applied. Name, Kind and Spec are empty: they are required.
func DefaultJob() JobConfig {
	return JobConfig{
		Batch:   100,
		Sink:    SinkConfig{Kind: "redis", Stream: "pulled", MaxLen: 100000},
		Timeout: 5 * time.Minute,
		Missed:  MissedOnce,
		Retry: RetryConfig{
			Attempts: 5,
			Initial:  30 * time.Second,
			Max:      30 * time.Minute,
		},
	}
}

// UnmarshalYAML decodes a providers entry over DefaultProvider, so omitted
// fields get their defaults while an explicit zero (jitter: 0s) is kept.
// Unknown keys are rejected by Parse, not here.
func (p *ProviderConfig) UnmarshalYAML(value *yaml.Node) error {
	type plain ProviderConfig // no methods: no recursion
	v := plain(DefaultProvider())
	if err := value.Decode(&v); err != nil {
		return err
	}
	*p = ProviderConfig(v)
	return nil
}

// UnmarshalYAML decodes a jobs entry over DefaultJob, so omitted fields get
// their defaults while an explicit zero (attempts: 0) is kept. Unknown keys
// are rejected by Parse, not here.
func (j *JobConfig) UnmarshalYAML(value *yaml.Node) error {
	type plain JobConfig
	v := plain(DefaultJob())
	if err := value.Decode(&v); err != nil {
		return err
	}
	*j = JobConfig(v)
	return nil
}

// Path picks the config file: flagValue if non-empty, else
// getenv(EnvConfig) if non-empty, else DefaultPath.
func Path(flagValue string, getenv func(string) string) string {
	if flagValue != "" {
		return flagValue
	}
	if getenv != nil {
		if p := getenv(EnvConfig); p != "" {
			return p
		}
	}
	return DefaultPath
}

// Load reads the config file at path, expands ${VAR} references, applies
// defaults, resolves _file secrets relative to the file's directory, applies
// EnvRedisURL, and validates. getenv is usually os.Getenv; nil means
// os.Getenv. Errors read "config <path>: ..." on one line.
func Load(path string, getenv func(string) string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, unwrapPath(err))
	}
	defer f.Close()
	cfg, err := parse(f, filepath.Dir(path), getenv)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse is Load for a config read from r; baseDir resolves relative
// secret_file paths ("" means the working directory). Errors read
// "config: ..." on one line.
func Parse(r io.Reader, baseDir string, getenv func(string) string) (*Config, error) {
	cfg, err := parse(r, baseDir, getenv)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

func parse(r io.Reader, baseDir string, getenv func(string) string) (*Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	raw, err := io.ReadAll(io.LimitReader(r, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read: %w", unwrapPath(err))
	}
	if len(raw) > maxFileSize {
		return nil, fmt.Errorf("larger than %d bytes", maxFileSize)
	}
	x, err := expand(raw, getenv)
	if err != nil {
		return nil, err
	}
	cfg := DefaultConfig()
	if err := decode(x, cfg); err != nil {
		return nil, x.scrub(err)
	}
	if u := getenv(EnvRedisURL); u != "" {
		cfg.Redis.URL = u
	}
	abs := func(path *string) {
		if *path != "" && !filepath.IsAbs(*path) {
			*path = filepath.Join(baseDir, *path)
		}
	}
	for i := range cfg.Encryption.Keys {
		abs(&cfg.Encryption.Keys[i].SecretFile)
	}
	abs(&cfg.Admin.TokenFile)
	abs(&cfg.Admin.ReadTokenFile)
	abs(&cfg.Admin.WriteTokenFile)
	abs(&cfg.Alerts.SecretFile)
	abs(&cfg.Alerts.PreviousSecretFile)
	abs(&cfg.Authorize.DoneURLSecretFile)
	abs(&cfg.Redis.TLS.CAFile)
	abs(&cfg.Redis.SentinelPasswordFile)
	abs(&cfg.Redis.TLS.CertFile)
	abs(&cfg.Redis.TLS.KeyFile)
	for i := range cfg.Jobs {
		abs(&cfg.Jobs[i].Sink.Path)
		abs(&cfg.Jobs[i].Sink.SecretFile)
		abs(&cfg.Jobs[i].Sink.PreviousSecretFile)
	}
	for i := range cfg.Providers {
		abs(&cfg.Providers[i].Digime.PrivateKeyFile)
		abs(&cfg.Providers[i].OAuth2.ClientSecretFile)
	}
	if err := cfg.Validate(); err != nil {
		return nil, x.scrub(err)
	}
	return cfg, nil
}

// unwrapPath drops an *fs.PathError's path, which the caller already
// prints, keeping errors.Is(err, fs.ErrNotExist) working.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// expansion is the result of expand.
type expansion struct {
	text []byte
	// lines are the (1-based) lines of text holding expanded values, so
	// decode errors can avoid quoting them.
	lines map[int]bool
	// values are the expanded values, scrubbed from any error that still
	// contains one.
	values []string
}

// expand replaces ${NAME} in src with getenv(NAME). Only the braced form is
// recognised, so a bare '$' (common in secrets) stays as it is, and "$${" is
// a literal "${". Values are not expanded again. An unset or empty variable
// is an error; values never appear in errors.
func expand(src []byte, getenv func(string) string) (*expansion, error) {
	var (
		buf     bytes.Buffer
		line    = 1
		unset   []string
		seen    = map[string]bool{}
		invalid []string
		x       = &expansion{lines: map[int]bool{}}
	)
	buf.Grow(len(src))
	for i := 0; i < len(src); {
		switch {
		case bytes.HasPrefix(src[i:], []byte("$${")):
			buf.WriteString("${")
			i += 3
		case bytes.HasPrefix(src[i:], []byte("${")):
			rest := src[i+2:]
			end := bytes.IndexAny(rest, "}\n")
			if end < 0 || rest[end] != '}' || !envName.Match(rest[:end]) {
				invalid = append(invalid, fmt.Sprintf("line %d: malformed ${...} reference (want ${NAME}; write $${ for a literal ${)", line))
				buf.WriteString("${")
				i += 2
				continue
			}
			name := string(rest[:end])
			i += 2 + end + 1
			v := getenv(name)
			if v == "" {
				if !seen[name] {
					seen[name] = true
					unset = append(unset, fmt.Sprintf("${%s} is not set", name))
				}
				continue
			}
			x.values = append(x.values, v)
			x.lines[line] = true
			for _, c := range []byte(v) {
				if c == '\n' {
					line++
					x.lines[line] = true
				}
			}
			buf.WriteString(v)
		default:
			if src[i] == '\n' {
				line++
			}
			buf.WriteByte(src[i])
			i++
		}
	}
	if problems := append(invalid, unset...); len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	x.text = buf.Bytes()
	return x, nil
}

// hidden replaces an expanded value in an error message.
const hidden = "(value from the environment, not shown)"

// scrub removes expanded values from err's text, a safety net for values
// that reach a message indirectly (a CRON_TZ zone quoted in a timezone
// error, say). A value is replaced where it appears quoted; one of 8 bytes
// or more, likely a secret, also wherever it appears at all. Shorter values
// are only hidden when quoted so that "5" does not eat line numbers.
func (x *expansion) scrub(err error) error {
	if len(x.values) == 0 {
		return err
	}
	clean := func(s string) string {
		for _, v := range x.values {
			q := strconv.Quote(v)
			s = strings.ReplaceAll(s, q, hidden)
			if len(v) >= 8 {
				s = strings.ReplaceAll(s, v, hidden)
				s = strings.ReplaceAll(s, q[1:len(q)-1], hidden)
			}
		}
		return s
	}
	var ve *ValidationError
	if errors.As(err, &ve) {
		for _, p := range ve.Problems {
			p.Field, p.Msg = clean(p.Field), clean(p.Msg)
		}
		return err
	}
	return errors.New(clean(err.Error()))
}

var (
	envName   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	simpleKey = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// decode decodes text over cfg. A first pass walks the YAML tree against
// Config's type and reports unknown keys, bad durations and wrong shapes
// with field paths; only a tree that passes is decoded for real, strictly.
func decode(x *expansion, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(x.text))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty file: all defaults
		}
		return yamlError(err, len(x.values) > 0)
	}
	for {
		// Only the first document is decoded; a second one would be
		// silently ignored, so it is an error unless it is empty (a
		// trailing "---").
		var extra yaml.Node
		err := dec.Decode(&extra)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return yamlError(err, len(x.values) > 0)
		}
		if len(extra.Content) > 0 && !isNull(extra.Content[0]) {
			return errors.New("more than one YAML document")
		}
	}

	c := checker{budget: maxNodes, tainted: x.lines}
	c.check(&root, reflect.TypeFor[Config](), "")
	if len(c.problems) > 0 {
		return &ValidationError{Problems: c.problems}
	}

	strict := yaml.NewDecoder(bytes.NewReader(x.text))
	strict.KnownFields(true)
	if err := strict.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return yamlError(err, len(x.values) > 0)
	}
	return nil
}

// yamlError flattens a yaml.v3 error onto one line. Its messages may quote
// text from the document (`value`, 'anchor'); when variables were expanded
// that text could be a secret, so quotes are emptied. Type errors lose
// their quoted values always: the checker reports those problems first,
// with field paths, so these are a fallback.
func yamlError(err error, expanded bool) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			msgs[i] = backquoted.ReplaceAllString(m, "")
		}
		return errors.New("yaml: " + oneLine(strings.Join(msgs, "; ")))
	}
	msg := oneLine(err.Error())
	if expanded {
		msg = backquoted.ReplaceAllString(msg, "")
		msg = singleQuoted.ReplaceAllString(msg, "''")
	}
	return errors.New(msg)
}

var (
	backquoted   = regexp.MustCompile(" ?`[^`]*`")
	singleQuoted = regexp.MustCompile(`'[^']*'`)
)

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ; ")), " ")
}

// maxNodes bounds the checker's walk; aliases can make a small document
// expand enormously ("billion laughs").
const maxNodes = 1 << 20

var durationType = reflect.TypeFor[time.Duration]()

// checker walks a YAML tree alongside a Go type, collecting problems.
type checker struct {
	problems []*FieldError
	budget   int
	tainted  map[int]bool
}

func (c *checker) add(field, format string, args ...any) {
	c.problems = append(c.problems, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

// quote renders a scalar for an error message, unless it came (even partly)
// from an environment variable.
func (c *checker) quote(n *yaml.Node) string {
	if c.fromEnv(n) {
		return hidden
	}
	v := n.Value
	if r := []rune(v); len(r) > 64 {
		v = string(r[:64]) + "..."
	}
	return fmt.Sprintf("%q", v)
}

// fromEnv reports whether a node's text may hold expanded text: whether
// any line it spans (a block scalar starts on the line before its text)
// holds some.
func (c *checker) fromEnv(n *yaml.Node) bool {
	last := n.Line + strings.Count(n.Value, "\n") + 1
	for l := n.Line; l <= last; l++ {
		if c.tainted[l] {
			return true
		}
	}
	return false
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return n.ShortTag()
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (c *checker) check(n *yaml.Node, t reflect.Type, path string) {
	c.budget--
	if c.budget == 0 {
		c.add("", "document too complex (excessive aliasing)")
	}
	if c.budget <= 0 {
		return
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) > 0 {
			c.check(n.Content[0], t, path)
		}
		return
	case yaml.AliasNode:
		if n.Alias != nil {
			c.check(n.Alias, t, path)
		}
		return
	}
	if isNull(n) {
		return // null keeps the default, as yaml.v3 does
	}
	at := fmt.Sprintf("(line %d)", n.Line)
	switch {
	case t == durationType:
		if n.Kind != yaml.ScalarNode {
			c.add(path, "must be a duration, got %s %s", kindName(n), at)
			return
		}
		if _, err := time.ParseDuration(n.Value); err != nil || n.ShortTag() != "!!str" {
			c.add(path, "invalid duration %s %s: want a Go duration with a unit, such as \"0s\", \"30s\", \"10m\" or \"1h30m\"", c.quote(n), at)
		}
	case t.Kind() == reflect.Struct:
		c.checkStruct(n, t, path, at)
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			c.add(path, "must be a list, got %s %s", kindName(n), at)
			return
		}
		for i, e := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			if t.Elem().Kind() == reflect.Struct && (isNull(e) || e.Kind == yaml.ScalarNode) {
				c.add(p, "must be a mapping, got %s (line %d)", kindName(e), e.Line)
				continue
			}
			c.check(e, t.Elem(), p)
		}
	case t.Kind() == reflect.String:
		if n.Kind != yaml.ScalarNode {
			c.add(path, "must be a string, got %s %s", kindName(n), at)
		}
	case t.Kind() == reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
			c.add(path, "must be true or false, got %s %s", c.describe(n), at)
		}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		v := reflect.New(t)
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(v.Interface()) != nil {
			c.add(path, "must be an integer, got %s %s", c.describe(n), at)
		}
	}
}

func (c *checker) describe(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return c.quote(n)
	}
	return kindName(n)
}

func (c *checker) checkStruct(n *yaml.Node, t reflect.Type, path, at string) {
	if n.Kind != yaml.MappingNode {
		what := "must be a mapping"
		if path == "" {
			what = "document must be a mapping"
		}
		c.add(path, "%s, got %s %s", what, kindName(n), at)
		return
	}
	fields := map[string]reflect.Type{}
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" || name == "" {
			continue
		}
		fields[name] = f.Type
		names = append(names, name)
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			c.checkMerge(v, t, path)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			c.add(path, "keys must be strings, got %s (line %d)", kindName(k), k.Line)
			continue
		}
		// Keys name fields in errors; a key that is not a known field is
		// shown quoted, and not at all if it came from the environment.
		p := joinPath(path, k.Value)
		shown := path
		if simpleKey.MatchString(k.Value) && !c.fromEnv(k) {
			shown = p
		}
		if first, dup := seen[k.Value]; dup {
			c.add(shown, "duplicate key %s (lines %d and %d)", c.quote(k), first, k.Line)
			continue
		}
		seen[k.Value] = k.Line
		ft, ok := fields[k.Value]
		if !ok {
			c.add(shown, "unknown key %s (line %d; want one of %s)", c.quote(k), k.Line, strings.Join(names, ", "))
			continue
		}
		c.check(v, ft, p)
	}
}

// checkMerge checks the value of a "<<" merge key: a mapping, an alias of
// one, or a list of those.
func (c *checker) checkMerge(v *yaml.Node, t reflect.Type, path string) {
	if v.Kind == yaml.SequenceNode {
		for _, e := range v.Content {
			c.check(e, t, path)
		}
		return
	}
	c.check(v, t, path)
}
