namespace Llama.Compiled.Families.Tests;

/// <summary>Llama 2 shape: multi-head attention (4 query heads, 4 KV heads), untied lm_head.</summary>
[LlamaModel("Configs/llama2.json")]
public partial class Llama2Model;

public sealed class Llama2ModelTests : FamilyTests
{
    protected override string ConfigFile => "llama2.json";

    protected override ILlamaModel Load(string folder) => Llama2Model.Load(folder);
}
