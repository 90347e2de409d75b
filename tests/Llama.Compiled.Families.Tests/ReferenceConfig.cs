using System;
using System.IO;
using System.Text.Json;

namespace Llama.Compiled.Families.Tests;

/// <summary>
/// A config.json read the way transformers' LlamaConfig / MistralConfig / Qwen2Config read it, with
/// their defaults. Independent of the generator's parser: the reference forward pass uses this.
/// </summary>
internal sealed record ReferenceConfig(
    string ModelType,
    int HiddenSize,
    int IntermediateSize,
    int LayerCount,
    int HeadCount,
    int KvHeadCount,
    int HeadDim,
    int VocabSize,
    int MaxPositions,
    double RmsNormEps,
    double RopeTheta,
    bool Tied,
    bool QkvBias,
    bool OutputBias,
    bool MlpBias,
    RopeScaling? Scaling)
{
    public static ReferenceConfig Load(string fileName) =>
        Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Configs", fileName)));

    public static ReferenceConfig Parse(string json)
    {
        using JsonDocument doc = JsonDocument.Parse(json);
        JsonElement c = doc.RootElement;
        string modelType = c.GetProperty("model_type").GetString()!;
        int hidden = c.GetProperty("hidden_size").GetInt32();
        int heads = c.GetProperty("num_attention_heads").GetInt32();
        int kvHeads = c.TryGetProperty("num_key_value_heads", out JsonElement kv) && kv.ValueKind != JsonValueKind.Null ? kv.GetInt32() : heads;
        int headDim = c.TryGetProperty("head_dim", out JsonElement hd) && hd.ValueKind != JsonValueKind.Null ? hd.GetInt32() : hidden / heads;
        bool Bool(string key) => c.TryGetProperty(key, out JsonElement e) && e.ValueKind == JsonValueKind.True;
        double Number(string key, double fallback) => c.TryGetProperty(key, out JsonElement e) && e.ValueKind == JsonValueKind.Number ? e.GetDouble() : fallback;

        RopeScaling? scaling = null;
        if (c.TryGetProperty("rope_scaling", out JsonElement rs) && rs.ValueKind == JsonValueKind.Object)
        {
            string type = (rs.TryGetProperty("rope_type", out JsonElement t) ? t : rs.GetProperty("type")).GetString()!;
            double Scaling(string key) => rs.TryGetProperty(key, out JsonElement e) ? e.GetDouble() : double.NaN;
            scaling = type switch
            {
                "llama3" or "linear" => new RopeScaling(type, Scaling("factor"), Scaling("low_freq_factor"),
                    Scaling("high_freq_factor"), Scaling("original_max_position_embeddings")),
                _ => throw new NotSupportedException("the reference implements llama3 and linear rope scaling, not " + type),
            };
        }

        bool attentionBias = modelType != "mistral" && Bool("attention_bias");
        return new ReferenceConfig(
            modelType,
            hidden,
            c.GetProperty("intermediate_size").GetInt32(),
            c.GetProperty("num_hidden_layers").GetInt32(),
            heads,
            kvHeads,
            headDim,
            c.GetProperty("vocab_size").GetInt32(),
            (int)Number("max_position_embeddings", 2048),
            Number("rms_norm_eps", 1e-6),
            Number("rope_theta", 10000),
            Bool("tie_word_embeddings"),
            // Qwen2Attention: q/k/v always have biases, o_proj never; LlamaAttention: all four follow attention_bias.
            QkvBias: modelType == "qwen2" || attentionBias,
            OutputBias: modelType == "llama" && attentionBias,
            MlpBias: modelType == "llama" && Bool("mlp_bias"),
            scaling);
    }
}

/// <summary>rope_scaling: "llama3" (all four parameters) or "linear" (factor only).</summary>
internal sealed record RopeScaling(string Type, double Factor, double LowFreqFactor, double HighFreqFactor, double OriginalMaxPositions);
