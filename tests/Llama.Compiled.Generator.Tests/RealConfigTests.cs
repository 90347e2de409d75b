using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json;
using Microsoft.CodeAnalysis;
using Xunit;

namespace Llama.Compiled.Generator.Tests;

/// <summary>Every published config in Configs/ compiles without diagnostics and without warnings, to the right shape.</summary>
public sealed class RealConfigTests
{
    /// <summary>Configs whose window or context needs a cap (Mistral's sliding window is 4096 of 32768).</summary>
    private static readonly Dictionary<string, int> s_maxContext = new(StringComparer.Ordinal)
    {
        ["Mistral-7B-v0.1.json"] = 4096,
    };

    public static TheoryData<string> ConfigNames()
    {
        var data = new TheoryData<string>();
        foreach (string file in Directory.EnumerateFiles(Path.Combine(AppContext.BaseDirectory, "Configs"), "*.json").Order(StringComparer.Ordinal))
            data.Add(Path.GetFileName(file));
        return data;
    }

    [Fact]
    public void AllPublishedConfigsArePresent()
    {
        string[] expected =
        [
            "Llama-2-7b-hf.json", "Llama-2-13b-hf.json", "TinyLlama-1.1B-Chat-v1.0.json", "SmolLM2-135M.json", "SmolLM2-360M.json",
            "Meta-Llama-3-8B.json", "Llama-3.1-8B.json", "Llama-3.2-1B.json", "Qwen2-0.5B.json", "Qwen2.5-0.5B.json",
            "Mistral-7B-v0.1.json", "stories15M.json", "stories110M.json",
        ];
        string[] present = Directory.EnumerateFiles(Path.Combine(AppContext.BaseDirectory, "Configs"), "*.json").Select(Path.GetFileName).OfType<string>().ToArray();
        foreach (string name in expected)
            Assert.Contains(name, present);
    }

    [Theory]
    [MemberData(nameof(ConfigNames))]
    public void GeneratesWithoutDiagnosticsAndCompilesWithoutWarnings(string name)
    {
        string config = GeneratorHarness.Config(name);
        int maxContext = s_maxContext.GetValueOrDefault(name);
        string arguments = "\"models/config.json\"" + (maxContext > 0 ? $", MaxContext = {maxContext}" : "");
        GeneratorRun run = GeneratorHarness.Run(GeneratorHarness.ModelSource(arguments, "public partial class Model;"),
            ("/project/models/config.json", config));

        Assert.True(run.GeneratorDiagnostics.IsEmpty,
            $"{name}: " + string.Join(Environment.NewLine, run.GeneratorDiagnostics));
        Assert.Equal(2, run.Sources.Length);
        Assert.True(run.CompilationDiagnostics.IsEmpty,
            $"{name}: " + string.Join(Environment.NewLine, run.CompilationDiagnostics.Take(20)));

        // The generated constants are the config's shape.
        using JsonDocument json = JsonDocument.Parse(config);
        JsonElement root = json.RootElement;
        int hidden = root.GetProperty("hidden_size").GetInt32();
        int heads = root.GetProperty("num_attention_heads").GetInt32();
        INamedTypeSymbol type = run.OutputCompilation.GetTypeByMetadataName("UserApp.Model")!;
        object? Constant(string member) => type.GetMembers(member).OfType<IFieldSymbol>().Single().ConstantValue;
        Assert.Equal(hidden, Constant("HiddenSize"));
        Assert.Equal(root.GetProperty("intermediate_size").GetInt32(), Constant("IntermediateSize"));
        Assert.Equal(root.GetProperty("num_hidden_layers").GetInt32(), Constant("LayerCount"));
        Assert.Equal(heads, Constant("HeadCount"));
        Assert.Equal(root.TryGetProperty("num_key_value_heads", out JsonElement kv) ? kv.GetInt32() : heads, Constant("KvHeadCount"));
        Assert.Equal(root.TryGetProperty("head_dim", out JsonElement hd) ? hd.GetInt32() : hidden / heads, Constant("HeadDim"));
        Assert.Equal(root.GetProperty("vocab_size").GetInt32(), Constant("VocabSize"));
        Assert.Equal(maxContext > 0 ? maxContext : root.GetProperty("max_position_embeddings").GetInt32(), Constant("MaxContext"));
        Assert.Equal(root.TryGetProperty("tie_word_embeddings", out JsonElement tied) && tied.GetBoolean(), Constant("TiedEmbeddings"));
    }
}
