namespace Llama.Compiled.Families.Tests;

/// <summary>TinyLlama shape: grouped-query attention 4:1 (8 query heads, 2 KV heads), untied.</summary>
[LlamaModel("Configs/tinyllama.json")]
public partial class TinyLlamaModel;

public sealed class TinyLlamaModelTests : FamilyTests
{
    protected override string ConfigFile => "tinyllama.json";

    protected override ILlamaModel Load(string folder) => TinyLlamaModel.Load(folder);
}
