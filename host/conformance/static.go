package conformance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/host"
	"github.com/propolis-mqtt/propolis/internal/yamlconf"
	"gopkg.in/yaml.v3"
)

// checkFolder runs the static checks of an extension folder: its manifest,
// then its module. It returns nil when the extension cannot be run.
func checkFolder(r *Report, dir string) *target {
	m, err := host.LoadManifest(dir)
	if err != nil {
		r.add("static", "manifest", Fail, "%s", manifestProblems(err))
		staticOnly(r, dir)
		return nil
	}
	r.add("static", "manifest", Pass, "%s: id %s, version %s, module %s", filepath.Join(dir, host.ManifestFile), m.ID, m.Version, m.Module)
	t := &target{dir: dir, module: filepath.Join(dir, m.Module), manifest: m}
	if t.bin, err = host.ReadModule(t.module); err != nil {
		r.add("static", "module compiles", Fail, "%v (the manifest's module key: %s)", err, m.Module)
		return nil
	}
	return checkModule(r, t)
}

// staticOnly checks the module of a folder whose manifest is bad, so that
// one run lists the module's problems too: the manifest's module key when
// it can be read, else the folder's only .wasm file. Nothing is run.
func staticOnly(r *Report, dir string) {
	var doc struct {
		Module string `yaml:"module"`
	}
	module := ""
	if data, err := os.ReadFile(filepath.Join(dir, host.ManifestFile)); err == nil && yaml.Unmarshal(data, &doc) == nil &&
		doc.Module != "" && filepath.IsLocal(doc.Module) {
		module = doc.Module
	} else if ms, _ := filepath.Glob(filepath.Join(dir, "*.wasm")); len(ms) == 1 {
		module = filepath.Base(ms[0])
	}
	if module == "" {
		r.add("static", "module compiles", Skip, "not checked: the manifest names no module that can be read, and the folder has not exactly one .wasm file")
		return
	}
	t := &target{dir: dir, module: filepath.Join(dir, module), manifest: &host.Manifest{}}
	var err error
	if t.bin, err = host.ReadModule(t.module); err != nil {
		r.add("static", "module compiles", Fail, "%v", err)
		return
	}
	t.static = true
	checkModule(r, t)
}

// manifestProblems lists a manifest's problems, one FILE:LINE:COLUMN: KEY:
// problem per line.
func manifestProblems(err error) string {
	var errs yamlconf.Errors
	if !errors.As(err, &errs) {
		return err.Error()
	}
	lines := make([]string, len(errs))
	for i, e := range errs {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// checkBare runs the static checks of a module without a folder; it is
// then run with a manifest made up for it (host.ManifestForModule)
// granting the services its imports need.
func checkBare(r *Report, path string) *target {
	r.add("static", "manifest", Skip, "a bare module, so no manifest: run with default limits, config {} and the services its imports need; check the extension folder to check its manifest")
	t := &target{dir: filepath.Dir(path), module: path, bare: true}
	var err error
	if t.bin, err = host.ReadModule(path); err != nil {
		r.add("static", "module compiles", Fail, "%v", err)
		return nil
	}
	return checkModule(r, t)
}

// checkModule checks the module's exports and imports against the ABI
// table, and its imported services against the manifest's grants.
func checkModule(r *Report, t *target) *target {
	rep, err := host.CheckModule(context.Background(), t.bin)
	if err != nil {
		r.add("static", "module compiles", Fail, "%s: %v", filepath.Base(t.module), err)
		return nil
	}
	r.add("static", "module compiles", Pass, "%s: %d bytes", filepath.Base(t.module), len(t.bin))
	marker := abi.Callbacks[abi.CallbackMarker].Export
	var markerProbs, exportProbs, importProbs []string
	for _, p := range rep.Problems {
		switch {
		case p.Name == "export "+marker:
			markerProbs = append(markerProbs, p.Err.Error())
		case strings.HasPrefix(p.Name, "export "):
			exportProbs = append(exportProbs, p.Err.Error())
		default:
			importProbs = append(importProbs, p.Err.Error())
		}
	}
	if len(markerProbs) > 0 {
		r.add("static", "ABI marker", Fail, "%s", strings.Join(markerProbs, "\n"))
	} else {
		r.add("static", "ABI marker", Pass, "exports %s %s (its version is checked when it runs)", marker, abi.Callbacks[abi.CallbackMarker].Sig)
	}
	if len(exportProbs) > 0 {
		r.add("static", "export signatures", Fail, "%s", strings.Join(exportProbs, "\n"))
	} else {
		r.add("static", "export signatures", Pass, "callbacks exported: %s", namesOr(abi.CallbackNames(rep.Callbacks), "none"))
	}
	if len(importProbs) > 0 {
		r.add("static", "imports", Fail, "%s", strings.Join(importProbs, "\n"))
	} else {
		r.add("static", "imports", Pass, "%d host functions of %s, each provided with its signature", len(rep.HostFuncs), abi.ImportModule)
	}
	// The services the imports need, with the functions that need them.
	need := map[abi.Service][]string{}
	for _, f := range rep.HostFuncs {
		if s := abi.HostFuncs[f].Service; s != abi.ServiceNone {
			need[s] = append(need[s], abi.HostFuncs[f].Name)
		}
	}
	var needed []string
	for s := abi.ServiceNone + 1; s < abi.NumServices; s++ {
		if len(need[s]) > 0 {
			needed = append(needed, s.String())
		}
	}
	if t.bare && len(need[abi.ServiceHTTP]) > 0 {
		r.add("static", "services", Fail, "imports %s of service http, whose grant needs the manifest's http.hosts: check the extension folder, not the bare module",
			strings.Join(need[abi.ServiceHTTP], ", "))
		return nil
	}
	if t.bare {
		if t.manifest, t.yaml, err = host.ManifestForModule(t.module, needed); err != nil {
			r.add("static", "services", Fail, "%v", err)
			return nil
		}
		r.add("static", "services", Pass, "a bare module: its grants are inferred from its imports, so this check cannot fail; run with the services its imports need: %s",
			namesOr(needed, "none"))
	} else if t.static {
		r.add("static", "services", Skip, "not checked: the manifest's services could not be read; the module imports functions of: %s", namesOr(needed, "none"))
	} else {
		var probs []string
		for s := abi.ServiceNone + 1; s < abi.NumServices; s++ {
			granted := slices.Contains(t.manifest.Services, s.String())
			switch {
			case len(need[s]) > 0 && !granted:
				probs = append(probs, fmt.Sprintf("imports %s of service %s, which the manifest's services list does not grant: add %s to services, or every call is refused with NOT_PERMITTED",
					strings.Join(need[s], ", "), s, s))
			case len(need[s]) == 0 && granted:
				probs = append(probs, fmt.Sprintf("the manifest grants service %s but the module imports none of its functions: remove it from services (least privilege)", s))
			}
		}
		if len(probs) > 0 {
			r.add("static", "services", Fail, "%s", strings.Join(probs, "\n"))
		} else {
			r.add("static", "services", Pass, "granted and imported: %s", namesOr(needed, "none"))
		}
	}
	if len(rep.Problems) > 0 {
		return nil
	}
	// A module asking for more or fewer services than granted still runs:
	// the run shows what its calls meet.
	return t
}

// namesOr joins names, or gives none when there are none.
func namesOr(names []string, none string) string {
	if len(names) == 0 {
		return none
	}
	return strings.Join(names, ", ")
}
