#include "router_core/estimate/dataset.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "router_core/estimate/splitmix.h"

namespace router::core {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  errno = 0;
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    const int err = errno;
    return absl::NotFoundError(
        absl::StrCat("cannot open ", path, ": ", err != 0 ? std::strerror(err) : "open failed"));
  }
  std::string text;
  char buffer[1 << 16];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file)) > 0) text.append(buffer, n);
  const bool failed = std::ferror(file) != 0;
  std::fclose(file);
  if (failed) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  return text;
}

absl::Status Malformed(absl::string_view file, int64_t line, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(file, ":", line, ": ", what));
}

// One CSV record and the 1-based line it starts on.
struct CsvRecord {
  int64_t line = 0;
  std::vector<std::string> fields;
};

// RFC 4180: fields separated by commas, records by LF or CRLF; a field that starts with a quote
// runs to the matching quote, may hold commas and newlines, and writes a quote as "". Empty lines
// are skipped.
absl::StatusOr<std::vector<CsvRecord>> ParseCsv(absl::string_view text, absl::string_view file) {
  std::vector<CsvRecord> records;
  size_t pos = 0;
  int64_t line = 1;
  while (pos < text.size()) {
    CsvRecord record;
    record.line = line;
    std::string field;
    bool end_of_record = false;
    while (!end_of_record) {
      field.clear();
      if (pos < text.size() && text[pos] == '"') {
        const int64_t start_line = line;
        ++pos;
        bool closed = false;
        while (pos < text.size()) {
          const char c = text[pos++];
          if (c == '"') {
            if (pos < text.size() && text[pos] == '"') {
              field.push_back('"');
              ++pos;
            } else {
              closed = true;
              break;
            }
          } else {
            if (c == '\n') ++line;
            field.push_back(c);
          }
        }
        if (!closed) return Malformed(file, start_line, "unterminated quoted field");
        if (pos < text.size() && text[pos] != ',' && text[pos] != '\n' && text[pos] != '\r') {
          return Malformed(file, line, "text after a closing quote");
        }
      } else {
        while (pos < text.size() && text[pos] != ',' && text[pos] != '\n' && text[pos] != '\r') {
          if (text[pos] == '"') return Malformed(file, line, "quote inside an unquoted field");
          field.push_back(text[pos++]);
        }
      }
      record.fields.push_back(field);
      if (pos < text.size() && text[pos] == ',') {
        ++pos;
        continue;
      }
      if (pos < text.size() && text[pos] == '\r') ++pos;
      if (pos < text.size() && text[pos] == '\n') ++pos;
      ++line;
      end_of_record = true;
    }
    const bool empty = record.fields.size() == 1 && record.fields[0].empty();
    if (!empty) records.push_back(std::move(record));
  }
  return records;
}

// Column index of `name` in the header record, or -1.
int Column(const CsvRecord& header, absl::string_view name) {
  for (size_t k = 0; k < header.fields.size(); ++k) {
    if (header.fields[k] == name) return static_cast<int>(k);
  }
  return -1;
}

// An empty cell is NaN (missing); anything else must be a finite number.
absl::StatusOr<double> ParseCell(const CsvRecord& record, int column, absl::string_view name,
                                 absl::string_view file) {
  const std::string& cell = record.fields[static_cast<size_t>(column)];
  const absl::string_view trimmed = absl::StripAsciiWhitespace(cell);
  if (trimmed.empty()) return kNaN;
  double value = 0.0;
  if (!absl::SimpleAtod(trimmed, &value) || !std::isfinite(value)) {
    return Malformed(file, record.line, absl::StrCat(name, ": not a finite number: '", cell, "'"));
  }
  return value;
}

absl::StatusOr<std::vector<DatasetPrompt>> ReadPrompts(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  std::vector<DatasetPrompt> prompts;
  absl::flat_hash_map<std::string, int64_t> seen;
  size_t pos = 0;
  int64_t line = 0;
  while (pos < text->size()) {
    size_t end = text->find('\n', pos);
    if (end == std::string::npos) end = text->size();
    const absl::string_view row(text->data() + pos, end - pos);
    pos = end + 1;
    ++line;
    if (absl::StripAsciiWhitespace(row).empty()) continue;
    const nlohmann::json object =
        nlohmann::json::parse(row, /*cb=*/nullptr, /*allow_exceptions=*/false);
    if (object.is_discarded()) return Malformed(path, line, "invalid JSON");
    if (!object.is_object()) return Malformed(path, line, "expected a JSON object");
    DatasetPrompt prompt;
    for (const char* key : {"prompt_id", "task", "text"}) {
      const auto it = object.find(key);
      if (it == object.end() || !it->is_string()) {
        return Malformed(path, line, absl::StrCat("missing string field '", key, "'"));
      }
    }
    prompt.id = object["prompt_id"].get<std::string>();
    prompt.task = object["task"].get<std::string>();
    prompt.text = object["text"].get<std::string>();
    if (const auto it = object.find("split"); it != object.end()) {
      if (!it->is_string()) return Malformed(path, line, "'split' is not a string");
      prompt.upstream_split = it->get<std::string>();
    }
    if (prompt.id.empty()) return Malformed(path, line, "empty prompt_id");
    if (!seen.emplace(prompt.id, line).second) {
      return Malformed(path, line,
                       absl::StrCat("duplicate prompt_id '", prompt.id, "' (first on line ",
                                    seen[prompt.id], ")"));
    }
    prompts.push_back(std::move(prompt));
  }
  if (prompts.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no prompts"));
  return prompts;
}

// "7B" -> 7, "8x7B" -> 56; nullopt when the text is not of that shape.
std::optional<double> ParseSize(absl::string_view size) {
  size = absl::StripAsciiWhitespace(size);
  if (size.empty() || (size.back() != 'B' && size.back() != 'b')) return std::nullopt;
  size.remove_suffix(1);
  double factor = 1.0;
  if (const size_t x = size.find('x'); x != absl::string_view::npos) {
    if (!absl::SimpleAtod(size.substr(0, x), &factor)) return std::nullopt;
    size.remove_prefix(x + 1);
  }
  double value = 0.0;
  if (!absl::SimpleAtod(size, &value)) return std::nullopt;
  return factor * value;
}

absl::StatusOr<std::vector<DatasetModel>> ReadModels(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  absl::StatusOr<std::vector<CsvRecord>> records = ParseCsv(*text, path);
  if (!records.ok()) return records.status();
  if (records->empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": empty file"));
  const CsvRecord& header = records->front();
  const int name_col = Column(header, "model");
  if (name_col < 0) return Malformed(path, header.line, "no 'model' column");
  const int in_col = Column(header, "input_price_usd_per_1M_tokens");
  const int out_col = Column(header, "output_price_usd_per_1M_tokens");
  const int params_col = Column(header, "params_b_from_name");
  const int size_col = Column(header, "size");

  std::vector<DatasetModel> models;
  absl::flat_hash_map<std::string, int> seen;
  for (size_t r = 1; r < records->size(); ++r) {
    const CsvRecord& record = (*records)[r];
    if (record.fields.size() != header.fields.size()) {
      return Malformed(
          path, record.line,
          absl::StrCat("expected ", header.fields.size(), " fields, got ", record.fields.size()));
    }
    DatasetModel model;
    model.name = record.fields[static_cast<size_t>(name_col)];
    if (model.name.empty()) return Malformed(path, record.line, "empty model name");
    if (!seen.emplace(model.name, 0).second) {
      return Malformed(path, record.line, absl::StrCat("duplicate model '", model.name, "'"));
    }
    for (auto [col, field, target] :
         {std::tuple{in_col, "input_price_usd_per_1M_tokens", &model.input_usd_per_mtok},
          std::tuple{out_col, "output_price_usd_per_1M_tokens", &model.output_usd_per_mtok},
          std::tuple{params_col, "params_b_from_name", &model.params_b}}) {
      if (col < 0) continue;
      absl::StatusOr<double> value = ParseCell(record, col, field, path);
      if (!value.ok()) return value.status();
      if (std::isnan(*value)) continue;
      if (*value < 0) return Malformed(path, record.line, absl::StrCat(field, ": negative"));
      *target = *value;
    }
    if (!model.params_b.has_value() && size_col >= 0) {
      model.params_b = ParseSize(record.fields[static_cast<size_t>(size_col)]);
    }
    models.push_back(std::move(model));
  }
  return models;
}

}  // namespace

absl::StatusOr<Dataset> ReadDataset(const std::string& dir) {
  const std::filesystem::path root(dir);
  std::error_code error;
  if (!std::filesystem::is_directory(root, error)) {
    return absl::NotFoundError(absl::StrCat("dataset directory not found: ", dir));
  }
  Dataset dataset;
  const std::filesystem::path normal = root.lexically_normal();
  std::filesystem::path named = normal.has_filename() ? normal : normal.parent_path();
  if (named.filename() == "derived") named = named.parent_path();
  dataset.name = named.filename().string();

  absl::StatusOr<std::vector<DatasetPrompt>> prompts =
      ReadPrompts((root / "prompts.jsonl").string());
  if (!prompts.ok()) return prompts.status();
  dataset.prompts = *std::move(prompts);
  absl::StatusOr<std::vector<DatasetModel>> all_models = ReadModels((root / "models.csv").string());
  if (!all_models.ok()) return all_models.status();

  const std::string labels_path = (root / "labels.csv").string();
  absl::StatusOr<std::string> text = ReadFile(labels_path);
  if (!text.ok()) return text.status();
  absl::StatusOr<std::vector<CsvRecord>> records = ParseCsv(*text, labels_path);
  if (!records.ok()) return records.status();
  if (records->empty()) {
    return absl::InvalidArgumentError(absl::StrCat(labels_path, ": empty file"));
  }
  const CsvRecord& header = records->front();
  int cols[5];
  const char* names[5] = {"prompt_id", "model", "score", "correct", "cost_usd"};
  for (int c = 0; c < 5; ++c) {
    cols[c] = Column(header, names[c]);
    if (cols[c] < 0) {
      return Malformed(labels_path, header.line, absl::StrCat("no '", names[c], "' column"));
    }
  }

  absl::flat_hash_map<std::string, int64_t> prompt_index;
  for (size_t p = 0; p < dataset.prompts.size(); ++p) {
    prompt_index[dataset.prompts[p].id] = static_cast<int64_t>(p);
  }
  absl::flat_hash_map<std::string, int> model_index;
  for (size_t m = 0; m < all_models->size(); ++m) {
    model_index[(*all_models)[m].name] = static_cast<int>(m);
  }

  // First pass over all models of models.csv; models without labels are dropped below.
  const size_t num_prompts = dataset.prompts.size();
  const size_t num_all = all_models->size();
  std::vector<double> score(num_prompts * num_all, kNaN);
  std::vector<double> correct(num_prompts * num_all, kNaN);
  std::vector<double> cost(num_prompts * num_all, kNaN);
  std::vector<bool> labelled(num_prompts * num_all, false);
  std::vector<bool> has_labels(num_all, false);
  for (size_t r = 1; r < records->size(); ++r) {
    const CsvRecord& record = (*records)[r];
    if (record.fields.size() != header.fields.size()) {
      return Malformed(
          labels_path, record.line,
          absl::StrCat("expected ", header.fields.size(), " fields, got ", record.fields.size()));
    }
    const std::string& prompt_id = record.fields[static_cast<size_t>(cols[0])];
    const std::string& model = record.fields[static_cast<size_t>(cols[1])];
    const auto p = prompt_index.find(prompt_id);
    if (p == prompt_index.end()) {
      return Malformed(labels_path, record.line,
                       absl::StrCat("prompt_id '", prompt_id, "' is not in prompts.jsonl"));
    }
    const auto m = model_index.find(model);
    if (m == model_index.end()) {
      return Malformed(labels_path, record.line,
                       absl::StrCat("model '", model, "' is not in models.csv"));
    }
    const size_t at = static_cast<size_t>(p->second) * num_all + static_cast<size_t>(m->second);
    if (labelled[at]) {
      return Malformed(
          labels_path, record.line,
          absl::StrCat("second label for prompt '", prompt_id, "' and model '", model, "'"));
    }
    labelled[at] = true;
    has_labels[static_cast<size_t>(m->second)] = true;
    double values[3];
    for (int c = 0; c < 3; ++c) {
      absl::StatusOr<double> value = ParseCell(record, cols[c + 2], names[c + 2], labels_path);
      if (!value.ok()) return value.status();
      values[c] = *value;
    }
    if (!std::isnan(values[1]) && (values[1] < 0 || values[1] > 1)) {
      return Malformed(labels_path, record.line, "correct: outside [0, 1]");
    }
    if (!std::isnan(values[2]) && values[2] < 0) {
      return Malformed(labels_path, record.line, "cost_usd: negative");
    }
    score[at] = values[0];
    correct[at] = values[1];
    cost[at] = values[2];
  }

  std::vector<size_t> kept;
  for (size_t m = 0; m < num_all; ++m) {
    if (has_labels[m]) {
      kept.push_back(m);
      dataset.models.push_back((*all_models)[m]);
    }
  }
  if (kept.empty()) return absl::InvalidArgumentError(absl::StrCat(labels_path, ": no labels"));
  const size_t num_models = kept.size();
  dataset.score.assign(num_prompts * num_models, kNaN);
  dataset.correct.assign(num_prompts * num_models, kNaN);
  dataset.cost_usd.assign(num_prompts * num_models, kNaN);
  for (size_t p = 0; p < num_prompts; ++p) {
    for (size_t k = 0; k < num_models; ++k) {
      const size_t from = p * num_all + kept[k];
      const size_t to = p * num_models + k;
      dataset.score[to] = score[from];
      dataset.correct[to] = correct[from];
      dataset.cost_usd[to] = cost[from];
    }
  }
  return dataset;
}

absl::StatusOr<DatasetSplit> SplitDataset(const Dataset& dataset, const SplitOptions& options) {
  for (auto [name, value] :
       {std::pair{"train", options.train}, std::pair{"calibration", options.calibration},
        std::pair{"test", options.test}}) {
    if (!std::isfinite(value) || value < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("split fraction ", name, ": expected a finite value >= 0, got ", value));
    }
  }
  if (options.train <= 0) {
    return absl::InvalidArgumentError("split fraction train: must be > 0");
  }
  const double sum = options.train + options.calibration + options.test;
  if (std::abs(sum - 1.0) > 1e-9) {
    return absl::InvalidArgumentError(
        absl::StrCat("split fractions: train + calibration + test must be 1, got ", sum));
  }

  // Groups of byte-identical texts, in order of first occurrence.
  absl::flat_hash_map<absl::string_view, size_t> group_of;
  std::vector<std::vector<int64_t>> groups;
  for (size_t p = 0; p < dataset.prompts.size(); ++p) {
    const auto [it, inserted] = group_of.emplace(dataset.prompts[p].text, groups.size());
    if (inserted) groups.emplace_back();
    groups[it->second].push_back(static_cast<int64_t>(p));
  }
  // Fisher-Yates with SplitMix64: the same permutation everywhere (std::shuffle is not).
  SplitMix64 rng(Mix64(options.seed));
  std::vector<size_t> order(groups.size());
  for (size_t g = 0; g < order.size(); ++g) order[g] = g;
  for (size_t g = order.size(); g > 1; --g) {
    std::swap(order[g - 1], order[rng.Below(g)]);
  }

  const double n = static_cast<double>(dataset.prompts.size());
  const double train_end = options.train * n;
  const double calibration_end = (options.train + options.calibration) * n;
  DatasetSplit split;
  double dealt = 0;
  for (const size_t g : order) {
    // A group goes to the part its first prompt's position falls in.
    std::vector<int64_t>& part = dealt < train_end         ? split.train
                                 : dealt < calibration_end ? split.calibration
                                                           : split.test;
    part.insert(part.end(), groups[g].begin(), groups[g].end());
    dealt += static_cast<double>(groups[g].size());
  }
  for (std::vector<int64_t>* part : {&split.train, &split.calibration, &split.test}) {
    std::sort(part->begin(), part->end());
  }
  return split;
}

}  // namespace router::core
