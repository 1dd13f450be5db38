#include "options.hpp"

#include <algorithm>
#include <optional>
#include <set>

namespace vitals {

namespace {

// Normalises one scalar to the text the plugin receives; nullopt with `why` if it does not fit
// (quoting the value unless it is secret).
std::optional<std::string> normalise(vitals_option_type type, const std::string& text,
                                     std::string& why, bool secret = false) {
  const std::string got = secret ? "(a secret value, not shown)" : "'" + text + "'";
  switch (type) {
    case VITALS_OPT_INT: {
      char* end = nullptr;
      errno = 0;
      const long long v = std::strtoll(text.c_str(), &end, 10);
      if (text.empty() || *end || errno) {
        why = "expected an integer, got " + got;
        return std::nullopt;
      }
      return std::to_string(v);
    }
    case VITALS_OPT_BOOL:
      if (text == "true" || text == "false") return text;
      why = "expected true or false, got " + got;
      return std::nullopt;
    case VITALS_OPT_DURATION:
      if (auto d = parse_duration(text)) return std::to_string(d->count());
      why = "invalid duration " + got + "; use e.g. 250ms, 2s, 1m";
      return std::nullopt;
    default:
      return text;
  }
}

}  // namespace

const char* option_type_name(vitals_option_type t) {
  switch (t) {
    case VITALS_OPT_STRING:
      return "string";
    case VITALS_OPT_INT:
      return "integer";
    case VITALS_OPT_BOOL:
      return "bool";
    case VITALS_OPT_DURATION:
      return "duration";
    case VITALS_OPT_LIST:
      return "list";
    case VITALS_OPT_MAP:
      return "map";
  }
  return "unknown";
}

std::vector<vitals_option_value> BoundOptions::c_values() const {
  std::vector<vitals_option_value> out;
  out.reserve(entries_.size());
  for (const auto& e : entries_)
    out.push_back({e.name.c_str(), e.has_key ? e.key.c_str() : nullptr, e.value.c_str()});
  return out;
}

bool bind_options(const ProbeConfig& probe, const vitals_plugin& plugin, const std::string& file,
                  BoundOptions& out, std::vector<std::string>& errors) {
  const std::string base = "probes." + probe.name + ".options";
  const size_t errors_before = errors.size();
  auto error = [&](int line, const std::string& path, const std::string& message) {
    errors.push_back(file + ":" + std::to_string(line) + ": " + path + ": " + message);
  };
  std::set<std::string> known;
  for (uint32_t i = 0; i < plugin.option_count; ++i) known.insert(plugin.options[i].name);
  for (const auto& [name, value] : probe.options) {
    if (!known.count(name)) {
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      error(value.line, base,
            "unknown option '" + name + "' for plugin " + plugin.name +
                "; valid options: " + (list.empty() ? "(none)" : list));
    }
  }
  for (uint32_t i = 0; i < plugin.option_count; ++i) {
    const vitals_option& opt = plugin.options[i];
    const std::string path = base + "." + opt.name;
    auto it = probe.options.find(opt.name);
    if (it == probe.options.end()) {
      if (opt.required) {
        error(probe.line, base, std::string("missing required option '") + opt.name + "'");
      } else if (opt.default_value) {
        std::string why;
        auto v = normalise(opt.type, opt.default_value, why);
        if (!v)
          error(probe.line, path,
                "invalid default in plugin " + std::string(plugin.name) + ": " + why);
        else if (opt.type == VITALS_OPT_LIST)
          out.add(opt.name, *v);
        else if (opt.type != VITALS_OPT_MAP)
          out.add(opt.name, *v);
      }
      continue;
    }
    const OptionValue& v = it->second;
    using Kind = OptionValue::Kind;
    if (opt.type == VITALS_OPT_MAP) {
      if (v.kind != Kind::Map) {
        error(v.line, path, "expected a map of key: value");
        continue;
      }
      for (const auto& [k, val] : v.map) {
        out.add(opt.name, k, val);
        if (opt.secret) out.add_secret(val);
      }
    } else if (opt.type == VITALS_OPT_LIST) {
      if (v.kind == Kind::Map) {
        error(v.line, path, "expected a list");
        continue;
      }
      const auto items = v.kind == Kind::List ? v.list : std::vector<std::string>{v.scalar};
      for (const auto& item : items) {
        out.add(opt.name, item);
        if (opt.secret) out.add_secret(item);
      }
    } else {
      if (v.kind != Kind::Scalar) {
        error(v.line, path, std::string("expected a single ") + option_type_name(opt.type));
        continue;
      }
      std::string why;
      if (auto n = normalise(opt.type, v.scalar, why, opt.secret)) {
        out.add(opt.name, *n);
        if (opt.secret) out.add_secret(v.scalar);
      } else {
        error(v.line, path, why);
      }
    }
  }
  return errors.size() == errors_before;
}

namespace {

const std::string kMark = "[redacted]";

std::string scrub(std::string text, const std::vector<std::string>& secrets) {
  for (const auto& s : secrets) {
    if (s.empty()) continue;
    for (size_t pos = text.find(s); pos != std::string::npos;
         pos = text.find(s, pos + kMark.size()))
      text.replace(pos, s.size(), kMark);
  }
  return text;
}

}  // namespace

void Secrets::add(const std::string& value) {
  auto keep = [&](const std::string& v) {
    auto& list = v.size() >= 3 ? scrubbed_ : too_short_;
    if (!v.empty() && std::find(list.begin(), list.end(), v) == list.end()) list.push_back(v);
  };
  keep(value);
  if (auto space = value.rfind(' '); space != std::string::npos) keep(value.substr(space + 1));
}

std::string safe_text(std::string_view text, const Secrets& secrets) {
  // Scrubbed before and after one_line: a secret holding a newline or a stray byte is found as
  // written, and a secret the plugin split with a newline ("hunter\n2") once joined again.
  std::vector<std::string> shown;
  for (const auto& s : secrets.scrubbed()) shown.push_back(one_line(s));
  std::string out = scrub(one_line(scrub(std::string(text), secrets.scrubbed())), shown);
  if (secrets.too_short().empty()) return out;
  std::string rest = out;  // what is left around the [redacted] marks
  for (size_t pos; (pos = rest.find(kMark)) != std::string::npos;) rest.erase(pos, kMark.size());
  for (const auto& s : secrets.too_short())
    if (rest.find(one_line(s)) != std::string::npos) return kWithheld;
  return out;
}

}  // namespace vitals
