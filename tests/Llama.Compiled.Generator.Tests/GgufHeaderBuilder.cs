using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text;

namespace Llama.Compiled.Generator.Tests;

/// <summary>
/// The header file build/Llama.Compiled.targets writes for a GGUF (see GgufHeaderParser): metadata values as raw JSON,
/// tensors as (name, ggml type, shape rows first). Starts as stories260K's f32 GGUF (5 layers, 64 wide, GQA 8:4, 512 tokens).
/// </summary>
internal sealed class GgufHeaderBuilder
{
    public const string GgufPath = "/project/models/model.gguf";
    public const string HeaderPath = "/project/obj/Release/net10.0/llama-compiled/model.0123abcd.gguf-header.json";

    private readonly List<KeyValuePair<string, string>> _metadata;
    private readonly List<(string Name, int Type, long[] Shape)> _tensors;
    /// <summary>The values of rope_freqs.weight as raw JSON, which the targets copy from the file; null when not written.</summary>
    private readonly string[]? _ropeFrequencyFactors;

    private GgufHeaderBuilder(IEnumerable<KeyValuePair<string, string>> metadata, IEnumerable<(string, int, long[])> tensors, string[]? ropeFrequencyFactors = null)
    {
        _metadata = metadata.ToList();
        _tensors = tensors.ToList();
        _ropeFrequencyFactors = ropeFrequencyFactors;
    }

    public static GgufHeaderBuilder Stories260K(string arch = "llama", int layers = 5, int hidden = 64, int ffn = 172, int heads = 8, int kvHeads = 4, int vocab = 512, int matrixType = 0)
    {
        var metadata = new Dictionary<string, string>
        {
            ["general.architecture"] = $"\"{arch}\"",
            ["general.name"] = "\"stories260K\"",
            [arch + ".context_length"] = "512",
            [arch + ".embedding_length"] = Int(hidden),
            [arch + ".block_count"] = Int(layers),
            [arch + ".feed_forward_length"] = Int(ffn),
            [arch + ".attention.head_count"] = Int(heads),
            [arch + ".attention.head_count_kv"] = Int(kvHeads),
            [arch + ".attention.layer_norm_rms_epsilon"] = "1E-05",
            [arch + ".rope.dimension_count"] = Int(hidden / heads),
            [arch + ".rope.freq_base"] = "10000",
            ["tokenizer.ggml.model"] = "\"llama\"",
            ["tokenizer.ggml.tokens"] = $"{{ \"array\": \"string\", \"length\": {vocab} }}",
            ["tokenizer.ggml.bos_token_id"] = "1",
            ["tokenizer.ggml.eos_token_id"] = "2",
        };
        int q = hidden, kv = hidden / heads * kvHeads;
        var tensors = new List<(string, int, long[])> { ("token_embd.weight", matrixType, [vocab, hidden]) };
        for (int i = 0; i < layers; i++)
        {
            tensors.Add(($"blk.{i}.attn_norm.weight", 0, [hidden]));
            tensors.Add(($"blk.{i}.attn_q.weight", matrixType, [q, hidden]));
            tensors.Add(($"blk.{i}.attn_k.weight", matrixType, [kv, hidden]));
            tensors.Add(($"blk.{i}.attn_v.weight", matrixType, [kv, hidden]));
            tensors.Add(($"blk.{i}.attn_output.weight", matrixType, [hidden, q]));
            tensors.Add(($"blk.{i}.ffn_norm.weight", 0, [hidden]));
            tensors.Add(($"blk.{i}.ffn_gate.weight", matrixType, [ffn, hidden]));
            tensors.Add(($"blk.{i}.ffn_up.weight", matrixType, [ffn, hidden]));
            tensors.Add(($"blk.{i}.ffn_down.weight", matrixType, [hidden, ffn]));
        }
        tensors.Add(("output_norm.weight", 0, [hidden]));
        tensors.Add(("output.weight", matrixType, [vocab, hidden]));
        return new GgufHeaderBuilder(metadata, tensors);
    }

    private static string Int(int value) => value.ToString(CultureInfo.InvariantCulture);

    /// <summary>Sets (or appends) metadata <paramref name="key"/> to the raw JSON <paramref name="rawValue"/>.</summary>
    public GgufHeaderBuilder With(string key, string rawValue)
    {
        var copy = new GgufHeaderBuilder(_metadata, _tensors, _ropeFrequencyFactors);
        int i = copy._metadata.FindIndex(e => e.Key == key);
        if (i >= 0)
            copy._metadata[i] = new(key, rawValue);
        else
            copy._metadata.Add(new(key, rawValue));
        return copy;
    }

    public GgufHeaderBuilder Without(string key) =>
        new(_metadata.Where(e => e.Key != key), _tensors, _ropeFrequencyFactors);

    /// <summary>Adds a tensor, or replaces the one of that name.</summary>
    public GgufHeaderBuilder WithTensor(string name, int type, params long[] shape) =>
        new(_metadata, _tensors.Any(t => t.Name == name)
            ? _tensors.Select(t => t.Name == name ? (name, type, shape) : t)
            : _tensors.Append((name, type, shape)), _ropeFrequencyFactors);

    public GgufHeaderBuilder WithoutTensor(string name) => new(_metadata, _tensors.Where(t => t.Name != name), _ropeFrequencyFactors);

    /// <summary>Changes the ggml type of every tensor whose name matches.</summary>
    public GgufHeaderBuilder Retype(Func<string, bool> names, int type) =>
        new(_metadata, _tensors.Select(t => names(t.Name) ? (t.Name, type, t.Shape) : t), _ropeFrequencyFactors);

    /// <summary>An F32 rope_freqs.weight of these values, with the values as the targets write them (round-trip floats).</summary>
    public GgufHeaderBuilder WithRopeFrequencyFactors(params float[] factors) =>
        WithRopeFrequencyFactors(factors.Select(f => f.ToString("R", CultureInfo.InvariantCulture)).ToArray());

    /// <summary>An F32 rope_freqs.weight whose values are these raw JSON values (the targets write NaN as "NaN").</summary>
    public GgufHeaderBuilder WithRopeFrequencyFactors(params string[] rawValues) =>
        new(_metadata, WithTensor("rope_freqs.weight", 0, rawValues.Length)._tensors, rawValues);

    /// <summary>The header of a file whose rope_freqs.weight values were not copied (an older targets file wrote it).</summary>
    public GgufHeaderBuilder WithoutRopeFrequencyFactorValues() => new(_metadata, _tensors);

    public string ToString(string ggufPath)
    {
        var json = new StringBuilder();
        json.Append("{\n  \"format\": \"llama-compiled-gguf-header/1\",\n  \"gguf\": \"").Append(ggufPath).Append("\",\n  \"version\": 3,\n  \"metadata\": {");
        json.Append(string.Join(",", _metadata.Select(e => $"\n    \"{e.Key}\": {e.Value}")));
        json.Append("\n  },\n  \"tensors\": [");
        json.Append(string.Join(",", _tensors.Select(t => $"\n    {{ \"name\": \"{t.Name}\", \"type\": {t.Type}, \"shape\": [{string.Join(", ", t.Shape)}] }}")));
        json.Append("\n  ]");
        if (_ropeFrequencyFactors is not null)
            json.Append(",\n  \"ropeFrequencyFactors\": [").Append(string.Join(", ", _ropeFrequencyFactors)).Append(']');
        json.Append("\n}\n");
        return json.ToString();
    }

    public override string ToString() => ToString(GgufPath);

    /// <summary>The AdditionalFiles item as the targets add it: the header file, naming the GGUF.</summary>
    public (string Path, string Text) Item(string ggufPath = GgufPath) => (HeaderPath.Replace("model.", System.IO.Path.GetFileNameWithoutExtension(ggufPath) + ".", StringComparison.Ordinal), ToString(ggufPath));
}
