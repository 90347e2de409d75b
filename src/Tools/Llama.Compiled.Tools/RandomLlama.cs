using System;
using System.Collections.Generic;
using System.IO;

namespace Llama.Compiled.Tools;

/// <summary>
/// Random weights for a LLaMA shape, scaled so that the model is a meaningful test: every sublayer adds
/// about as much to the residual stream as the embedding holds (so attention, RoPE and GQA change the
/// logits, not just the current token's embedding), attention scores have a standard deviation of ~2
/// (softmax neither uniform nor one-hot), and the logits spread over tens of units (argmax well defined).
/// Weights are a pure function of (seed, tensor name): a tensor's values never depend on which other
/// tensors were generated.
/// </summary>
/// <remarks>
/// Standard deviations (H hidden, I intermediate, Q = heads·head_dim): embedding 1; q/k 1.5/√H; v 1/√H;
/// o 3/√Q; gate/up 1/√H; down 3/√I; untied classifier 4/√H; layer norms 1 + N(0, 0.1); the final norm
/// N(0, 1) (random signs, so a tied classifier does not favour the current token); qwen2's q/k/v biases 0.5 (a third
/// of what the q/k projections give, so a missing, misplaced or unrotated bias moves the logits without drowning them).
/// With N(0, 0.02) weights and unit norms a small model's logits are near-uniform and its residual is the
/// embedding alone — a test that could not see a wrong RoPE.
/// </remarks>
public static class RandomLlama
{
    /// <summary>Scale of what attention and the FFN add to the residual stream, relative to the embedding.</summary>
    private const float Gain = 3f;

    /// <summary>The Hugging Face tensor names of <paramref name="shape"/> in file order (with q/k/v biases for qwen2).</summary>
    public static IEnumerable<string> TensorNames(LlamaModelShape shape, string architecture = "llama")
    {
        bool qkvBias = LlamaArchitecture.HasQkvBias(architecture);
        yield return "model.embed_tokens.weight";
        for (int l = 0; l < shape.LayerCount; l++)
        {
            string p = $"model.layers.{l}.";
            yield return p + "input_layernorm.weight";
            yield return p + "self_attn.q_proj.weight";
            if (qkvBias)
                yield return p + "self_attn.q_proj.bias";
            yield return p + "self_attn.k_proj.weight";
            if (qkvBias)
                yield return p + "self_attn.k_proj.bias";
            yield return p + "self_attn.v_proj.weight";
            if (qkvBias)
                yield return p + "self_attn.v_proj.bias";
            yield return p + "self_attn.o_proj.weight";
            yield return p + "post_attention_layernorm.weight";
            yield return p + "mlp.gate_proj.weight";
            yield return p + "mlp.up_proj.weight";
            yield return p + "mlp.down_proj.weight";
        }
        yield return "model.norm.weight";
        if (!shape.TiedEmbeddings)
            yield return "lm_head.weight";
    }

    /// <summary>The values of tensor <paramref name="name"/> (Hugging Face name), row-major.</summary>
    public static float[] Tensor(LlamaModelShape shape, int seed, string name)
    {
        int h = shape.HiddenSize, i = shape.IntermediateSize, q = shape.HeadCount * shape.HeadDim, kv = shape.KvHeadCount * shape.HeadDim;
        string kind = name.StartsWith("model.layers.", StringComparison.Ordinal) ? name[(name.IndexOf('.', "model.layers.".Length) + 1)..] : name;
        (int count, float mean, float std) = kind switch
        {
            "model.embed_tokens.weight" => (shape.VocabSize * h, 0f, 1f),
            "lm_head.weight" => (shape.VocabSize * h, 0f, 4f / MathF.Sqrt(h)),
            // The final norm's weights have random signs: with tied embeddings the classifier is the embedding, and
            // positive weights would make the current token's own logit win at every step (a constant sequence).
            "model.norm.weight" => (h, 0f, 1f),
            "input_layernorm.weight" or "post_attention_layernorm.weight" => (h, 1f, 0.1f),
            "self_attn.q_proj.weight" => (q * h, 0f, 1.5f / MathF.Sqrt(h)),
            "self_attn.k_proj.weight" => (kv * h, 0f, 1.5f / MathF.Sqrt(h)),
            "self_attn.v_proj.weight" => (kv * h, 0f, 1f / MathF.Sqrt(h)),
            "self_attn.q_proj.bias" => (q, 0f, 0.5f),
            "self_attn.k_proj.bias" or "self_attn.v_proj.bias" => (kv, 0f, 0.5f),
            "self_attn.o_proj.weight" => (h * q, 0f, Gain / MathF.Sqrt(q)),
            "mlp.gate_proj.weight" or "mlp.up_proj.weight" => (i * h, 0f, 1f / MathF.Sqrt(h)),
            "mlp.down_proj.weight" => (h * i, 0f, Gain / MathF.Sqrt(i)),
            _ => throw new ArgumentException($"unknown tensor {name}", nameof(name)),
        };
        var values = new float[count];
        var rng = new Xoshiro(Seed(seed, name));
        for (int k = 0; k < count; k += 2)
        {
            (float a, float b) = rng.NextGaussianPair();
            values[k] = mean + std * a;
            if (k + 1 < count)
                values[k + 1] = mean + std * b;
        }
        return values;
    }

    /// <summary>
    /// A placeholder SentencePiece vocabulary llama.cpp accepts: &lt;unk&gt;, &lt;s&gt;, &lt;/s&gt;, the 256 byte
    /// pieces, then "▁tN" pieces.
    /// </summary>
    public static GgufVocabulary Vocabulary(int size)
    {
        if (size < 259)
            throw new ArgumentOutOfRangeException(nameof(size), size, "the placeholder vocabulary needs at least 259 tokens");
        var tokens = new string[size];
        var scores = new float[size];
        var types = new int[size];
        tokens[0] = "<unk>"; types[0] = 2;
        tokens[1] = "<s>"; types[1] = 3;
        tokens[2] = "</s>"; types[2] = 3;
        for (int b = 0; b < 256; b++)
        {
            tokens[3 + b] = $"<0x{b:X2}>";
            types[3 + b] = 6;
        }
        for (int t = 259; t < size; t++)
        {
            tokens[t] = "\u2581t" + t.ToString(System.Globalization.CultureInfo.InvariantCulture);
            scores[t] = -t;
            types[t] = 1;
        }
        return new GgufVocabulary(tokens, scores, types, BosTokenId: 1, EosTokenId: 2, UnknownTokenId: 0);
    }

    /// <summary>
    /// Writes the model as GGUF with 2-D tensors of <paramref name="type"/> (norms F32; matrices whose rows
    /// are not 32-blocks F16 when <paramref name="type"/> is Q8_0/Q4_0), with the placeholder vocabulary, as a file of
    /// <paramref name="architecture"/> (qwen2: with q/k/v biases). Writes to a temporary name first, so a file that
    /// exists is complete.
    /// </summary>
    public static string WriteGguf(string path, LlamaModelShape shape, int seed, GgufTensorType type, string name, string architecture = "llama")
    {
        if (File.Exists(path))
            return path;
        string? dir = System.IO.Path.GetDirectoryName(path);
        if (!string.IsNullOrEmpty(dir))
            Directory.CreateDirectory(dir);
        string partial = path + ".partial-" + Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture);
        // Random rows have no layout of their own: each file's rows are in the order its architecture rotates.
        RopeLayout layout = LlamaArchitecture.GgufRotatesAdjacentPairs(architecture) ? RopeLayout.AdjacentPairs : RopeLayout.RotateHalf;
        GgufWriter.WriteLlama(partial, shape, tensorName => Tensor(shape, seed, tensorName), type,
            layout, Vocabulary(shape.VocabSize), name, architecture: architecture);
        File.Move(partial, path, overwrite: true);
        return path;
    }

    private static ulong Seed(int seed, string name)
    {
        // FNV-1a of the name, mixed with the seed: stable across runs and .NET versions (unlike string.GetHashCode).
        ulong hash = 14695981039346656037UL ^ (ulong)(uint)seed;
        foreach (char c in name)
        {
            hash ^= c;
            hash *= 1099511628211UL;
        }
        return hash;
    }

    /// <summary>xoshiro256** seeded by SplitMix64, with Box–Muller normals.</summary>
    private struct Xoshiro
    {
        private ulong _s0, _s1, _s2, _s3;

        public Xoshiro(ulong seed)
        {
            _s0 = SplitMix(ref seed);
            _s1 = SplitMix(ref seed);
            _s2 = SplitMix(ref seed);
            _s3 = SplitMix(ref seed);
        }

        public ulong Next()
        {
            ulong result = RotateLeft(_s1 * 5, 7) * 9;
            ulong t = _s1 << 17;
            _s2 ^= _s0;
            _s3 ^= _s1;
            _s1 ^= _s2;
            _s0 ^= _s3;
            _s2 ^= t;
            _s3 = RotateLeft(_s3, 45);
            return result;
        }

        /// <summary>Two independent N(0, 1) samples.</summary>
        public (float, float) NextGaussianPair()
        {
            double u1 = ((Next() >> 11) + 1) * (1.0 / 9007199254740993.0); // (0, 1]
            double u2 = (Next() >> 11) * (1.0 / 9007199254740992.0);       // [0, 1)
            double r = Math.Sqrt(-2.0 * Math.Log(u1));
            (double sin, double cos) = Math.SinCos(2.0 * Math.PI * u2);
            return ((float)(r * cos), (float)(r * sin));
        }

        private static ulong RotateLeft(ulong x, int k) => (x << k) | (x >> (64 - k));

        private static ulong SplitMix(ref ulong state)
        {
            ulong z = state += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }
    }
}
